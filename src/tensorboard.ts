// TensorBoard event files as the Hugging Face Trainer's TensorBoardCallback writes them through torch's
// SummaryWriter: `events.out.tfevents.<time>.<host>.<pid>.<n>` holding TFRecords (length, masked CRC32C of the
// length, an Event protobuf, its masked CRC32C). Scalars are Summary values (simple_value), the arguments are text
// (the text plugin's string tensor). The protobuf messages are few and fixed, so they are encoded here by their
// field numbers (tensorflow/core/util/event.proto, framework/summary.proto) rather than through generated code.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LogEntry, TrainerCallback, TrainerControl, TrainerState } from './trainer-callback.js';
import { argsJson, type TrainingArguments } from './training-args.js';

const CRC32C = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC32C[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add a constant, so CRCs of CRCs do not look like CRCs. */
export function maskedCrc32c(b: Uint8Array): number {
  const c = crc32c(b);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/** The protobuf wire format, as much of it as Event needs. */
class Proto {
  private bytes: number[] = [];
  private varint(v: number | bigint) {
    let n = BigInt(v);
    if (n < 0n) n += 1n << 64n;  // int64 two's complement
    while (n >= 0x80n) { this.bytes.push(Number(n & 0x7fn) | 0x80); n >>= 7n; }
    this.bytes.push(Number(n));
  }
  private key(field: number, wire: number) { this.varint((field << 3) | wire); }
  int(field: number, v: number | bigint) { this.key(field, 0); this.varint(v); return this; }
  double(field: number, v: number) { this.key(field, 1); const b = Buffer.alloc(8); b.writeDoubleLE(v); this.bytes.push(...b); return this; }
  float(field: number, v: number) { this.key(field, 5); const b = Buffer.alloc(4); b.writeFloatLE(v); this.bytes.push(...b); return this; }
  raw(field: number, data: Uint8Array) {
    this.key(field, 2);
    this.varint(data.length);
    for (let i = 0; i < data.length; i++) this.bytes.push(data[i]);
    return this;
  }
  str(field: number, s: string) { return this.raw(field, Buffer.from(s, 'utf8')); }
  msg(field: number, m: Proto) { return this.raw(field, m.done()); }
  done(): Uint8Array { return Uint8Array.from(this.bytes); }
}

// Event: wall_time 1, step 2, file_version 3, summary 5, session_log 7.
// Summary: value 1. Summary.Value: tag 1, simple_value 2, tensor 8, metadata 9.
// SummaryMetadata: plugin_data 1 (PluginData: plugin_name 1). TensorProto: dtype 1 (DT_STRING = 7),
// tensor_shape 2 (dim 2: size 1), string_val 8. SessionLog: status 1 (START = 1).
const event = (step: number) => new Proto().double(1, Date.now() / 1000).int(2, step);

/** Where the Trainer puts event files by default, as transformers does: runs/<Mon DD_HH-MM-SS>_<host> in the output dir. */
export function defaultLoggingDir(outputDir: string, now = new Date()): string {
  const mon = now.toLocaleString('en-US', { month: 'short' });
  const p = (n: number) => String(n).padStart(2, '0');
  return path.join(outputDir, 'runs', `${mon}${p(now.getDate())}_${p(now.getHours())}-${p(now.getMinutes())}-${p(now.getSeconds())}_${os.hostname()}`);
}

let fileCount = 0;

export class TensorBoardWriter {
  private fd: number;
  readonly file: string;

  /**
   * Opens a new event file in `dir` (a run's folder: TensorBoard reads all of its files as one run). With
   * `purgeStep`, a resumed run first tells TensorBoard to drop what an earlier writer logged from that step on
   * (SessionLog START), so steps logged after the last checkpoint are not shown twice.
   */
  constructor(readonly dir: string, purgeStep?: number) {
    mkdirSync(dir, { recursive: true });
    // TensorBoard reads a run's files in name order: a later writer's file must sort after earlier ones.
    let time = Math.floor(Date.now() / 1000);
    for (const n of readdirSync(dir)) { const m = /^events\.out\.tfevents\.(\d+)\./.exec(n); if (m) time = Math.max(time, Number(m[1]) + 1); }
    this.file = path.join(dir, `events.out.tfevents.${time}.${os.hostname()}.${process.pid}.${fileCount++}`);
    this.fd = openSync(this.file, 'a');
    this.write(event(purgeStep ?? 0).str(3, 'brain.Event:2'));
    if (purgeStep !== undefined) this.write(event(purgeStep).msg(7, new Proto().int(1, 1)));
  }

  private write(e: Proto) {
    const data = e.done();
    const header = Buffer.alloc(12);
    header.writeBigUInt64LE(BigInt(data.length), 0);
    header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
    const footer = Buffer.alloc(4);
    footer.writeUInt32LE(maskedCrc32c(data), 0);
    writeSync(this.fd, Buffer.concat([header, data, footer]));
  }

  scalar(tag: string, value: number, step: number) {
    this.write(event(step).msg(5, new Proto().msg(1, new Proto().str(1, tag).float(2, value))));
  }

  /** As SummaryWriter.add_text: the tag gets "/text_summary", the text plugin shows it. */
  text(tag: string, text: string, step = 0) {
    const tensor = new Proto().int(1, 7).msg(2, new Proto().msg(2, new Proto().int(1, 1))).str(8, text);
    const metadata = new Proto().msg(1, new Proto().str(1, 'text'));
    this.write(event(step).msg(5, new Proto().msg(1, new Proto().str(1, `${tag}/text_summary`).msg(8, tensor).msg(9, metadata))));
  }

  close() {
    if (this.fd < 0) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = -1;
  }
}

/** The Trainer's tags for a log entry (transformers' rewrite_logs): eval_x -> eval/x, test_x -> test/x, else train/x. */
export function tensorboardTags(entry: Record<string, number>): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const [k, v] of Object.entries(entry)) {
    if (k === 'step' || typeof v !== 'number') continue;
    const tag = k.startsWith('eval_') ? `eval/${k.slice(5)}` : k.startsWith('test_') ? `test/${k.slice(5)}` : `train/${k}`;
    out.push([tag, v]);
  }
  return out;
}

/**
 * transformers' TensorBoardCallback (report_to "tensorboard"): at the start the arguments and the model config as
 * text, then every log entry as scalars at its global step, closed at the end. A resumed run appends to its run
 * folder from the step after the checkpoint's.
 */
export class TensorBoardCallback implements TrainerCallback {
  private writer: TensorBoardWriter | undefined;
  constructor(private readonly o: { worldSize: number; modelConfig: object; resumed: boolean }) {}
  onTrainBegin(args: TrainingArguments, state: Readonly<TrainerState>) {
    this.writer = new TensorBoardWriter(args.loggingDir ?? defaultLoggingDir(args.outputDir), this.o.resumed ? state.global_step + 1 : undefined);
    this.writer.text('args', argsJson(args, this.o.worldSize));
    this.writer.text('model_config', JSON.stringify(this.o.modelConfig, null, 2));
  }
  onLog(_args: TrainingArguments, state: Readonly<TrainerState>, _control: TrainerControl, logs: LogEntry) {
    if (this.writer) for (const [tag, v] of tensorboardTags(logs)) this.writer.scalar(tag, v, state.global_step);
  }
  onTrainEnd() {
    this.writer?.close();
    this.writer = undefined;
  }
}
