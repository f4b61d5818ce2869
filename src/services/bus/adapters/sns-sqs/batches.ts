// Splits what goes out into SNS's and SQS's batches, which are limited both
// in entries and in bytes altogether.

/** Entries in one PublishBatch, SendMessageBatch or DeleteMessageBatch: SNS's and SQS's own limit. */
export const AWS_BATCH_MAX = 10;
/** Bytes of message bodies and attributes in one PublishBatch or SendMessageBatch (SNS's and SQS's 256 KiB; events are at most 64 KiB, so ten may not fit). */
export const AWS_BATCH_BYTES_MAX = 256 * 1024;

/**
 * Consecutive runs of `items`, in order, each at most `countMax` long and at
 * most `bytesMax` by `bytesOf`; an item larger than `bytesMax` alone goes in a
 * run of its own (the service refuses it, naming it, rather than this
 * dropping it).
 */
export function batches<T>(items: readonly T[], bytesOf: (item: T) => number, countMax = AWS_BATCH_MAX, bytesMax = AWS_BATCH_BYTES_MAX): T[][] {
  const runs: T[][] = [];
  let run: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = bytesOf(item);
    if (run.length > 0 && (run.length >= countMax || bytes + size > bytesMax)) {
      runs.push(run);
      run = [];
      bytes = 0;
    }
    run.push(item);
    bytes += size;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** What SNS and SQS count of a message: its body and each attribute's name, type and value, in UTF-8. */
export function messageBytes(body: string, attributes: Readonly<Record<string, { DataType?: string | undefined; StringValue?: string | undefined }>>): number {
  let bytes = Buffer.byteLength(body);
  for (const [name, value] of Object.entries(attributes)) bytes += Buffer.byteLength(name) + Buffer.byteLength(value.DataType ?? '') + Buffer.byteLength(value.StringValue ?? '');
  return bytes;
}
