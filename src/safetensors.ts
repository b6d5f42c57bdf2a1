// The safetensors format (https://huggingface.co/docs/safetensors): u64 little-endian header size, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}, then the byte buffer. Everything is checked
// before any tensor is built, because these files come from the internet.
import { promises as fs } from 'node:fs';
import { InputError, show } from './errors.js';
import { writeFileAtomic } from './fsutil.js';

export const DTYPE_SIZES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
/** safetensors' own limit: a larger header is refused before it is read. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry { name: string; dtype: string; shape: number[]; data: Uint8Array }
export interface SafetensorsFile { tensors: TensorEntry[]; metadata: Record<string, string> }

export function parseSafetensors(buf: Uint8Array, file: string): SafetensorsFile {
  if (buf.byteLength < 8) throw new InputError(file, `not a safetensors file: ${buf.byteLength} bytes, shorter than the 8-byte header size`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new InputError(file, `safetensors header claims ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLen = Number(n);
  if (8 + headerLen > buf.byteLength) throw new InputError(file, `safetensors header claims ${headerLen} bytes but the file has only ${buf.byteLength - 8} after the size field (truncated?)`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new InputError(file, `safetensors header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new InputError(file, 'safetensors header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = buf.byteLength - dataStart;
  const tensors: TensorEntry[] = [];
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number, string]> = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Object.values(raw).some((v) => typeof v !== 'string'))
        throw new InputError(file, '__metadata__ must map strings to strings');
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) throw new InputError(file, `tensor ${name}: entry is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_SIZES))
      throw new InputError(file, `tensor ${name}: unknown dtype ${show(e.dtype)} (known: ${Object.keys(DTYPE_SIZES).join(', ')})`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new InputError(file, `tensor ${name}: shape must be an array of non-negative integers`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1])
      throw new InputError(file, `tensor ${name}: data_offsets must be [begin, end] with 0 <= begin <= end`);
    if (off[1] > dataLen) throw new InputError(file, `tensor ${name}: data_offsets [${off[0]}, ${off[1]}] run past the end of the data (${dataLen} bytes)`);
    const numel = (e.shape as number[]).reduce((a, b) => a * b, 1);
    const expected = numel * DTYPE_SIZES[e.dtype];
    if (off[1] - off[0] !== expected)
      throw new InputError(file, `tensor ${name}: ${off[1] - off[0]} bytes for shape [${e.shape}] of ${e.dtype}, which needs ${expected}`);
    ranges.push([off[0], off[1], name]);
    tensors.push({ name, dtype: e.dtype, shape: e.shape as number[], data: buf.subarray(dataStart + off[0], dataStart + off[1]) });
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (let i = 1; i < ranges.length; i++)
    if (ranges[i][0] < ranges[i - 1][1]) throw new InputError(file, `tensors ${ranges[i - 1][2]} and ${ranges[i][2]} overlap in the data buffer`);
  return { tensors, metadata };
}

export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);  // one read; each tensor is then copied once, into its libtorch tensor
  } catch (e) {
    throw new InputError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseSafetensors(buf, file);
}

export function encodeSafetensors(tensors: TensorEntry[], metadata: Record<string, string> = {}): Buffer[] {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);  // the data buffer starts 8-byte aligned
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return [head, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
}

export async function writeSafetensors(file: string, tensors: TensorEntry[], metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
