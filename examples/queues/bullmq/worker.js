// The BullMQ worker of the `emails` queue: sends one email (here: waits as
// long as sending would take). REDIS_URL=redis://localhost:6379/0 node worker.js
'use strict';

const { Worker } = require('bullmq');
const IORedis = require('ioredis');

const connection = new IORedis(process.env.REDIS_URL || 'redis://localhost:6379/0', {
  maxRetriesPerRequest: null,
});

const worker = new Worker(
  'emails',
  async job => {
    await new Promise(resolve => setTimeout(resolve, 500));
    return `sent to ${job.data.to}`;
  },
  // Five emails at a time per replica; targetPerReplica in k8s.yaml follows.
  { connection, concurrency: 5 },
);
worker.on('failed', (job, err) => console.error(`job ${job && job.id} failed: ${err.message}`));

// Finish the emails being sent before the pod goes (Kubernetes sends SIGTERM).
process.on('SIGTERM', async () => {
  await worker.close();
  process.exit(0);
});
