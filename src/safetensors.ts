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

/** A tensor left in its file: the addon reads its bytes straight into the tensor (no copy through JS). */
export interface FileTensor { name: string; dtype: string; shape: number[]; file: string; offset: number; nbytes: number }

interface HeaderEntry { name: string; dtype: string; shape: number[]; begin: number; end: number }

/** The u64 header size, checked against the limit and against the bytes that follow it. */
function headerLength(n: bigint, available: number, file: string): number {
  if (n > BigInt(MAX_HEADER_BYTES)) throw new InputError(file, `safetensors header claims ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const headerLen = Number(n);
  if (headerLen > available) throw new InputError(file, `safetensors header claims ${headerLen} bytes but the file has only ${available} after the size field (truncated?)`);
  return headerLen;
}

/** Validates the JSON header against a data buffer of dataLen bytes: dtypes, shapes, sizes, bounds, overlaps. */
function parseHeader(bytes: Uint8Array, dataLen: number, file: string): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new InputError(file, `safetensors header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new InputError(file, 'safetensors header is not a JSON object');
  const entries: HeaderEntry[] = [];
  let metadata: Record<string, string> = {};
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
    entries.push({ name, dtype: e.dtype, shape: e.shape as number[], begin: off[0], end: off[1] });
  }
  const ranges = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < ranges.length; i++)
    if (ranges[i].begin < ranges[i - 1].end) throw new InputError(file, `tensors ${ranges[i - 1].name} and ${ranges[i].name} overlap in the data buffer`);
  return { entries, metadata };
}

export function parseSafetensors(buf: Uint8Array, file: string): SafetensorsFile {
  if (buf.byteLength < 8) throw new InputError(file, `not a safetensors file: ${buf.byteLength} bytes, shorter than the 8-byte header size`);
  const n = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getBigUint64(0, true);
  const headerLen = headerLength(n, buf.byteLength - 8, file);
  const dataStart = 8 + headerLen;
  const { entries, metadata } = parseHeader(buf.subarray(8, dataStart), buf.byteLength - dataStart, file);
  const tensors = entries.map(({ name, dtype, shape, begin, end }) => ({ name, dtype, shape, data: buf.subarray(dataStart + begin, dataStart + end) }));
  return { tensors, metadata };
}

/** Reads and checks only the header; the tensors stay in the file for the addon to read (model weights, optimizer state). */
export async function indexSafetensors(file: string): Promise<{ tensors: FileTensor[]; metadata: Record<string, string> }> {
  let h: fs.FileHandle;
  try {
    h = await fs.open(file, 'r');
  } catch (e) {
    throw new InputError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = (await h.stat()).size;
    if (size < 8) throw new InputError(file, `not a safetensors file: ${size} bytes, shorter than the 8-byte header size`);
    const head = Buffer.alloc(8);
    await h.read(head, 0, 8, 0);
    const headerLen = headerLength(head.readBigUInt64LE(0), size - 8, file);
    const bytes = Buffer.alloc(headerLen);
    const { bytesRead } = await h.read(bytes, 0, headerLen, 8);
    if (bytesRead !== headerLen) throw new InputError(file, 'the file ended inside its header (changed while reading?)');
    const dataStart = 8 + headerLen;
    const { entries, metadata } = parseHeader(bytes, size - dataStart, file);
    const tensors = entries.map(({ name, dtype, shape, begin, end }) => ({ name, dtype, shape, file, offset: dataStart + begin, nbytes: end - begin }));
    return { tensors, metadata };
  } finally {
    await h.close();
  }
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
