// The CPU's instruction-set features, so that benchmark results from different machines are never compared as one
// (AVX2-only, AVX-512, AMX processors take different kernels in oneDNN and ATen).
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { addon } from './native.js';

/** The flags of /proc/cpuinfo that decide the kernels; empty where the file is not there (not Linux). */
const FEATURES = ['avx2', 'fma', 'avx_vnni', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_tile', 'amx_bf16', 'amx_int8'];

export interface CpuInfo {
  model: string | undefined;
  /** Vendor, family and model numbers ("AuthenticAMD family 25 model 1"): a VM's model name can be as bare as "AMD
   * EPYC", and one name covers core generations whose FMA rate differs 2x (Zen 1 against Zen 3). */
  microarchitecture: string | undefined;
  /** Which of the deciding instruction-set flags this CPU reports. */
  features: string[];
  /** ATen's kernel level (AVX512, AVX2, DEFAULT) and whether bf16 evaluation runs on oneDNN's prepacked weights. */
  atenCapability: string;
  packedBf16: boolean;
  /** Whether int8 quantization (setQuantization) quantizes each product's input to 7 bits (no VNNI) or 8. */
  int8ReduceRange: boolean;
  /** Inference's fp32 product kernels (native/panel_gemm.cc): avx512, avx2, or none (oneDNN's prepacked products). */
  panelProducts: string;
  /** CPU fp32 training's forward and input-gradient products: onednn (AVX-512), panels (the AVX2 kernels), or libtorch (MKL). */
  trainingProducts: string;
  /** CPU bf16 autocast's products: onednn (oneDNN's bf16 kernels), panels (the AVX2 kernels on rounded operands), or libtorch. */
  bf16Products: string;
  /** libtorch's CPU allocator: keeping (freed blocks kept for reuse, native/cpu_allocator.cc) or default. */
  cpuAllocator: string;
}

export function cpuInfo(): CpuInfo {
  let flags = new Set<string>();
  let microarchitecture: string | undefined;
  try {
    const lines = readFileSync('/proc/cpuinfo', 'utf8').split('\n');
    const field = (name: string) => lines.find((l) => l.split(':')[0].trim() === name)?.split(':')[1]?.trim();
    flags = new Set((field('flags') ?? '').split(/\s+/));
    const [vendor, family, model] = [field('vendor_id'), field('cpu family'), field('model')];
    if (vendor && family && model) microarchitecture = `${vendor} family ${family} model ${model}`;
  } catch { /* not Linux: the runtime's answers below still say which kernels run */ }
  const rt = addon().runtime();
  return { model: os.cpus()[0]?.model, microarchitecture, features: FEATURES.filter((f) => flags.has(f)), atenCapability: rt.cpuCapability, packedBf16: rt.packedBf16, int8ReduceRange: rt.int8ReduceRange, panelProducts: rt.panelProducts, trainingProducts: rt.trainingProducts, bf16Products: rt.bf16Products, cpuAllocator: rt.cpuAllocator };
}
