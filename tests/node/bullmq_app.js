// Drives a real BullMQ for tests/sources_bullmq.rs. Every command prints
// one JSON line last. Usage: node bullmq_app.js COMMAND URL PREFIX QUEUE [ARGS]
//   worker N     a Worker with concurrency N: `hold` jobs block until the key
//                `<QUEUE>-release` exists, every other job ends at once
//   fill SEED HOLD  HOLD jobs the worker holds, then random numbers of every kind of job (see `fill`)
//   prioritized  only prioritized jobs, the next to run added a minute ago
//   observe      BullMQ's own counts (getJobCounts, getDelayedCount, isPaused)
//   pause|resume Queue.pause() / Queue.resume()
'use strict';

const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const [command, url, prefix, name, arg, arg2] = process.argv.slice(2);
const connection = new IORedis(url, { maxRetriesPerRequest: null });
const opts = { connection, prefix };

function random(seed) {
  // mulberry32: a small seeded generator, so a failure can be replayed.
  let a = Number(seed) >>> 0;
  return (lo, hi) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return lo + Math.floor(r * (hi - lo + 1));
  };
}

async function until(what, probe) {
  const deadline = Date.now() + 60000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 100));
  }
}

async function worker(concurrency) {
  const release = `${name}-release`;
  const w = new Worker(
    name,
    async job => {
      if (job.name === 'hold') {
        await until('the test to release held jobs', async () => (await connection.exists(release)) === 1);
      }
      return 'done';
    },
    { ...opts, concurrency: Number(concurrency) },
  );
  w.on('error', e => console.error(e));
  console.log(JSON.stringify({ started: true }));
}

// Jobs the worker's `concurrency` slots take and hold (the worker then
// fetches nothing, so it promotes no delayed job), then jobs that fail
// through BullMQ's own retry path: taken by a manual worker and failed
// (`Job.moveToFailed`), with attempts left and a backoff (Retrying, due in
// 2 s or in 10 min) or without (failed for good). Then what waits:
// immediate, prioritized, and delayed jobs, due (added "a minute ago" with
// a 1 s delay) or future.
async function fill(seed, holdArg) {
  const n = random(seed);
  const q = new Queue(name, opts);
  const hold = Number(holdArg);
  for (let i = 0; i < hold; i++) await q.add('hold', { i });
  await until('the worker to hold its jobs', async () => (await q.getActiveCount()) === hold);
  const counts = {
    hold,
    dead: n(0, 4),
    retryFuture: n(0, 4),
    retryDue: n(1, 4),
    immediate: n(1, 30),
    prioritized: n(0, 10),
    scheduledFuture: n(0, 6),
    scheduledDue: n(1, 6),
  };
  await failSome(q, counts);
  const first = await q.add('work', { i: 0 });
  for (let i = 1; i < counts.immediate; i++) await q.add('work', { i });
  for (let i = 0; i < counts.prioritized; i++) await q.add('work', { i }, { priority: n(1, 5) });
  for (let i = 0; i < counts.scheduledFuture; i++) await q.add('work', { i }, { delay: 600000 });
  for (let i = 0; i < counts.scheduledDue; i++) {
    await q.add('work', { i }, { timestamp: Date.now() - 60000, delay: 1000 });
  }
  await q.close();
  return { ...counts, headTimestamp: first.timestamp };
}

async function failSome(q, counts) {
  const batches = [
    [counts.dead, { attempts: 1 }],
    [counts.retryFuture, { attempts: 3, backoff: { type: 'fixed', delay: 600000 } }],
    // Last: no fetch follows that could promote them once they are due.
    [counts.retryDue, { attempts: 3, backoff: { type: 'fixed', delay: 2000 } }],
  ];
  const manual = new Worker(name, null, opts);
  for (const [count, jobOpts] of batches) {
    for (let i = 0; i < count; i++) await q.add('flaky', { i }, jobOpts);
    // All taken before any fails: a fetch promotes due delayed jobs, and
    // none may follow a failure whose retry could be due by then.
    const taken = [];
    for (let i = 0; i < count; i++) {
      let job;
      await until('a job to take', async () => (job = await manual.getNextJob('t', { block: false })));
      taken.push(job);
    }
    for (const job of taken) await job.moveToFailed(new Error('flaky'), 't');
  }
  await manual.close();
}

// The next to run is the lowest priority number, then the earliest added.
async function prioritized() {
  const q = new Queue(name, opts);
  await q.add('work', {}, { priority: 5, timestamp: Date.now() - 120000 });
  const next = await q.add('work', {}, { priority: 2, timestamp: Date.now() - 60000 });
  await q.add('work', {}, { priority: 2 });
  await q.close();
  return { headTimestamp: next.timestamp };
}

async function observe() {
  const q = new Queue(name, opts);
  const c = await q.getJobCounts();
  const delayedJobs = await q.getDelayed();
  const out = {
    waiting: c.waiting,
    prioritized: c.prioritized,
    active: c.active,
    delayed: c.delayed,
    failed: c.failed,
    completed: c.completed,
    waitingChildren: c['waiting-children'],
    delayedDue: await q.getDelayedCount(Date.now() + 1),
    delayedRetried: delayedJobs.filter(j => j.attemptsMade > 0).length,
    paused: await q.isPaused(),
  };
  await q.close();
  return out;
}

async function main() {
  let out;
  if (command === 'worker') return worker(arg);
  if (command === 'fill') out = await fill(arg, arg2);
  else if (command === 'prioritized') out = await prioritized();
  else if (command === 'observe') out = await observe();
  else if (command === 'pause' || command === 'resume') {
    const q = new Queue(name, opts);
    await q[command]();
    out = { paused: await q.isPaused() };
    await q.close();
  } else throw new Error(`unknown command ${command}`);
  console.log(JSON.stringify(out));
  await connection.quit();
}

main().catch(e => {
  console.error(e);
  process.exit(1);
});
