// The BullMQ peer of bench/run_all.py: the same measurements against the same Redis, one JSON line out.
//
//   node bullmq_bench.mjs enqueue    --redis URL --prefix P --n 2000 --batch 500
//   node bullmq_bench.mjs throughput --redis URL --prefix P --n 2000 --work-ms 0 --concurrency 50
//   node bullmq_bench.mjs latency    --redis URL --prefix P --samples 100 --gap-ms 20-120 --concurrency 50
//   node bullmq_bench.mjs worker     (internal: the latency run's worker, a separate process)
//
// Every key lives under the given prefix and is deleted at the end.  Jobs are removed on completion
// (removeOnComplete), as Dramatiq keeps no result either.

import { fork } from "node:child_process";
import { performance } from "node:perf_hooks";
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";

const QUEUE = "bench";

function parseArgs(argv) {
  const args = { mode: argv[0] };
  for (let i = 1; i < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
  return args;
}

function connectionOf(url) {
  const u = new URL(url);
  return {
    host: u.hostname || "127.0.0.1",
    port: Number(u.port || 6379),
    db: Number((u.pathname || "/0").slice(1) || 0),
    password: u.password ? decodeURIComponent(u.password) : undefined,
    maxRetriesPerRequest: null,
  };
}

// Wall-clock milliseconds with sub-millisecond resolution, comparable across processes of one machine.
const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function cleanup(connection, prefix) {
  const client = new IORedis(connection);
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    cursor = next;
    if (keys.length) await client.del(...keys);
  } while (cursor !== "0");
  await client.quit();
}

const jobOptions = { removeOnComplete: true, removeOnFail: true };

async function enqueue(args, connection, prefix) {
  const n = Number(args.n ?? 2000);
  const batch = Number(args.batch ?? 500);
  const queue = new Queue(QUEUE, { connection, prefix });
  await queue.waitUntilReady();
  await queue.add("warmup", { i: -1 }, jobOptions);

  let started = performance.now();
  for (let i = 0; i < n; i++) await queue.add("job", { i }, jobOptions);
  const oneByOne = n / ((performance.now() - started) / 1000);

  started = performance.now();
  for (let i = 0; i < n; i += batch) {
    const jobs = [];
    for (let j = i; j < Math.min(n, i + batch); j++) jobs.push({ name: "job", data: { i: j }, opts: jobOptions });
    await queue.addBulk(jobs);
  }
  const bulk = n / ((performance.now() - started) / 1000);
  await queue.close();
  return { add_per_s: oneByOne, add_bulk_per_s: bulk, jobs: n, batch };
}

async function throughput(args, connection, prefix) {
  const n = Number(args.n ?? 2000);
  const workMs = Number(args["work-ms"] ?? 0);
  const concurrency = Number(args.concurrency ?? 50);
  const queue = new Queue(QUEUE, { connection, prefix });
  for (let i = 0; i < n; i += 1000) {
    const jobs = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) jobs.push({ name: "job", data: { i: j }, opts: jobOptions });
    await queue.addBulk(jobs);
  }
  let first = null;
  let last = null;
  let done = 0;
  const cpuBefore = process.cpuUsage();
  let finished;
  const allDone = new Promise((resolve) => { finished = resolve; });
  const worker = new Worker(QUEUE, async () => {
    if (first === null) first = nowMs();
    if (workMs > 0) await sleep(workMs);
  }, { connection, prefix, concurrency });
  worker.on("completed", () => {
    done += 1;
    last = nowMs();
    if (done >= n) finished();
  });
  await Promise.race([allDone, sleep(Number(args.timeout ?? 300) * 1000)]);
  const cpu = process.cpuUsage(cpuBefore);
  await worker.close();
  await queue.close();
  return { jobs_per_s: done / ((last - first) / 1000), jobs: n, completed: done, work_ms: workMs, concurrency,
           worker_cpu_ms_per_job: (cpu.user + cpu.system) / 1000 / Math.max(1, done) };
}

function percentile(values, q) {
  const ordered = [...values].sort((a, b) => a - b);
  return ordered[Math.min(ordered.length - 1, Math.round(q * (ordered.length - 1)))];
}

async function latency(args, connection, prefix) {
  const samples = Number(args.samples ?? 100);
  const [gapMin, gapMax] = String(args["gap-ms"] ?? "20-120").split("-").map(Number);
  const results = `${prefix}:bench:latency`;
  const child = fork(new URL(import.meta.url).pathname,
    ["worker", "--redis", args.redis, "--prefix", prefix, "--concurrency", String(args.concurrency ?? 50)],
    { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  await new Promise((resolve, reject) => {
    child.once("message", resolve);
    child.once("exit", (code) => reject(new Error(`the BullMQ worker exited with ${code}`)));
  });
  const queue = new Queue(QUEUE, { connection, prefix });
  const reader = new IORedis(connection);
  const measured = [];
  try {
    for (let i = -3; i < samples; i++) {  // three warm-up jobs first
      await sleep(gapMin + Math.random() * (gapMax - gapMin));
      await queue.add("job", { sentAt: nowMs() }, jobOptions);
      const answer = await reader.blpop(results, 10);
      if (answer === null) throw new Error("a job did not start within 10 s");
      if (i >= 0) measured.push(Number(answer[1]));
    }
  } finally {
    child.kill("SIGTERM");
    await queue.close();
    await reader.quit();
  }
  return {
    samples: measured.length, p50_ms: percentile(measured, 0.5), p95_ms: percentile(measured, 0.95),
    p99_ms: percentile(measured, 0.99), max_ms: Math.max(...measured),
  };
}

async function latencyWorker(args, connection, prefix) {
  const writer = new IORedis(connection);
  const results = `${prefix}:bench:latency`;
  const worker = new Worker(QUEUE, async (job) => {
    const waited = nowMs() - job.data.sentAt;  // the job has started: measured before anything else
    await writer.rpush(results, waited.toFixed(3));
  }, { connection, prefix, concurrency: Number(args.concurrency ?? 50) });
  await worker.waitUntilReady();
  process.send("ready");
  process.on("SIGTERM", async () => {
    await worker.close();
    await writer.quit();
    process.exit(0);
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  args.redis = args.redis ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0";
  const connection = connectionOf(args.redis);
  const prefix = args.prefix ?? `bench-bullmq-${process.pid}`;
  if (args.mode === "worker") return latencyWorker(args, connection, prefix);
  const modes = { enqueue, throughput, latency };
  if (!modes[args.mode]) throw new Error(`unknown mode ${args.mode}; expected ${Object.keys(modes).join(", ")}`);
  try {
    const result = await modes[args.mode](args, connection, prefix);
    process.stdout.write(JSON.stringify({ system: "bullmq", mode: args.mode, ...result }) + "\n");
  } finally {
    await cleanup(connection, prefix);
  }
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
