// Goal: CPU readings over one measured window — the Koban server process(es), the load generator (this process) and the whole machine.
import type { KobanProcess } from './koban-process.ts';
import { readHostCpuTicks } from './proc.ts';

const US_PER_MS = 1000;

/** CPU over one measured window, in ms. */
export type CpuFigures = {
  /** Every Koban process given, all threads, summed. */
  kobanMs: number;
  /** Their main threads (event loops), summed. */
  kobanMainThreadMs: number;
  benchMs: number;
  /** Busy share of the whole machine (all cores), in %. */
  hostBusyPercent: number;
};

/** CPU readings of the Koban processes (none for a reference run), this process and the machine between begin() and end(). */
export function cpuWindow(kobans: readonly KobanProcess[]): { begin(): void; end(): void; figures(): CpuFigures } {
  const sum = (read: (koban: KobanProcess) => number | undefined): number | undefined => {
    if (kobans.length === 0) return undefined;
    let total = 0;
    for (const koban of kobans) {
      const value = read(koban);
      if (value === undefined) return undefined;
      total += value;
    }
    return total;
  };
  let kobanAtBegin: number | undefined;
  let mainAtBegin: number | undefined;
  let benchAtBegin: NodeJS.CpuUsage | undefined;
  let hostAtBegin: ReturnType<typeof readHostCpuTicks>;
  const figures: CpuFigures = { kobanMs: Number.NaN, kobanMainThreadMs: Number.NaN, benchMs: Number.NaN, hostBusyPercent: Number.NaN };
  return {
    begin() {
      kobanAtBegin = sum((koban) => koban.cpuMs());
      mainAtBegin = sum((koban) => koban.mainThreadCpuMs());
      benchAtBegin = process.cpuUsage();
      hostAtBegin = readHostCpuTicks();
    },
    end() {
      const kobanAtEnd = sum((koban) => koban.cpuMs());
      const mainAtEnd = sum((koban) => koban.mainThreadCpuMs());
      const bench = process.cpuUsage(benchAtBegin);
      const hostAtEnd = readHostCpuTicks();
      if (kobanAtBegin !== undefined && kobanAtEnd !== undefined) figures.kobanMs = kobanAtEnd - kobanAtBegin;
      if (mainAtBegin !== undefined && mainAtEnd !== undefined) figures.kobanMainThreadMs = mainAtEnd - mainAtBegin;
      figures.benchMs = (bench.user + bench.system) / US_PER_MS;
      if (hostAtBegin && hostAtEnd) figures.hostBusyPercent = (100 * (hostAtEnd.busy - hostAtBegin.busy)) / (hostAtEnd.total - hostAtBegin.total);
    },
    figures: () => figures,
  };
}
