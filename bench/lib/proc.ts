// Goal: read CPU time, parentage and titles of Linux processes and threads from /proc, for the benchmark's "where the time goes" figures.
import { readFileSync, readdirSync } from 'node:fs';

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat on Linux. */
export const CLOCK_TICKS_PER_S = 100;
const MS_PER_S = 1000;

/** Fields of /proc/<pid>/stat after "(comm) ", 0-based: state is 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14. */
const STAT_PPID = 1;
const STAT_UTIME = 11;
const STAT_STIME = 12;
const STAT_CUTIME = 13;
const STAT_CSTIME = 14;

export type ProcStat = {
  ppid: number;
  /** User + system CPU of the process (all its threads), in ms. */
  cpuMs: number;
  /** User + system CPU of its children that have exited and were waited for, in ms. */
  reapedChildrenCpuMs: number;
};

/** /proc/<pid>/stat, or /proc/<pid>/task/<tid>/stat for one thread; undefined once the process is gone or unreadable. */
export function readProcStat(pid: number, tid?: number): ProcStat | undefined {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    const ticksToMs = (ticks: number) => (ticks * MS_PER_S) / CLOCK_TICKS_PER_S;
    const cpuTicks = fields[STAT_UTIME]! + fields[STAT_STIME]!;
    if (!Number.isFinite(cpuTicks)) return undefined;
    return {
      ppid: fields[STAT_PPID]!,
      cpuMs: ticksToMs(cpuTicks),
      reapedChildrenCpuMs: ticksToMs(fields[STAT_CUTIME]! + fields[STAT_CSTIME]!),
    };
  } catch {
    return undefined;
  }
}

/** The command line as the process shows it (PostgreSQL rewrites it into its process title), spaces for NULs. */
export function readCmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return undefined;
  }
}

/** Child process ids of a single-threaded process (such as the postgres postmaster), from /proc/<pid>/task/<pid>/children; a scan of /proc where that file is missing. */
export function listChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((part) => part !== '').map(Number);
  } catch {
    return listPids().filter((candidate) => readProcStat(candidate)?.ppid === pid);
  }
}

/** Every process id visible in /proc. */
export function listPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .map(Number);
  } catch {
    return [];
  }
}

/** Busy and total jiffies of the whole machine, from /proc/stat: their deltas give host CPU use. */
export function readHostCpuTicks(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const total = values.reduce((sum, value) => sum + value, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}
