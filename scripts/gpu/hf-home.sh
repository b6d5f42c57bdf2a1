# Sourced by the GPU scripts: an HF home with MRPC (from .gpu/, see pack.sh), and MiniLM and bert-base-uncased with
# random weights on MiniLM's tokenizer (the real weights do not travel; bert-base-uncased shares its vocabulary).
export HF_HOME=${HF_HOME:-/tmp/gpu-hf-home}
random_model() {  # repo, then BertConfig overrides on MiniLM's config
  local repo=$1 overrides=$2 commit=0000000000000000000000000000000000000001
  local dir=$HF_HOME/hub/models--${repo//\//--}
  [ -d "$dir" ] && return
  mkdir -p "$dir/snapshots/$commit" "$dir/refs" && echo -n $commit > "$dir/refs/main"
  cp .gpu/minilm/* "$dir/snapshots/$commit/"
  (cd /tmp && python3 -c "
import torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
c = BertConfig.from_pretrained('$dir/snapshots/$commit', **$overrides)
BertModel(c).save_pretrained('$dir/snapshots/$commit')" 2>&1 | grep -v Writing)
}
mkdir -p "$HF_HOME/hub"
[ -d "$HF_HOME/hub/datasets--nyu-mll--glue" ] || cp -r .gpu/hf-home/hub/* "$HF_HOME/hub/"
random_model sentence-transformers/all-MiniLM-L6-v2 "{}"
random_model bert-base-uncased "dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)"
export HF_HUB_OFFLINE=1
