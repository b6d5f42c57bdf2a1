"""PyTorch side of scripts/bench/step-micro.mjs: the same model config and batch, AdamW single-tensor and fused."""
import torch, time
from transformers import BertConfig, BertForSequenceClassification
torch.manual_seed(0)
m = BertForSequenceClassification(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)).train()
B,S=8,52
ids = torch.randint(1000,21000,(B,S)); mask = torch.ones(B,S,dtype=torch.long)
for i in range(B): mask[i, S-i*3:] = 0 if i else 1
labels = torch.arange(B)%2
for fused in (False, True):
  opt = torch.optim.AdamW(m.parameters(), lr=5e-5, fused=fused)
  fb=os_=0
  for i in range(60):
    t=time.perf_counter(); out=m(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), labels=labels); out.loss.backward(); a=time.perf_counter()-t
    t=time.perf_counter(); torch.nn.utils.clip_grad_norm_(m.parameters(),1.0); opt.step(); opt.zero_grad(); c=time.perf_counter()-t
    if i>=10: fb+=a; os_+=c
  print(f"fused={fused} fwd+bwd {fb/50*1000:.1f} ms, clip+optimizer {os_/50*1000:.1f} ms")
