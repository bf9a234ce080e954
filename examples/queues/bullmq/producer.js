// Adds a burst of emails: REDIS_URL=redis://localhost:6379/0 node producer.js 300
'use strict';

const { Queue } = require('bullmq');
const IORedis = require('ioredis');

async function main() {
  const count = Number(process.argv[2] || 100);
  const connection = new IORedis(process.env.REDIS_URL || 'redis://localhost:6379/0');
  const queue = new Queue('emails', { connection });
  for (let i = 0; i < count; i++) {
    // Three tries, 30 s apart: a failed try waits in `delayed` (Retrying once due).
    await queue.add('welcome', { to: `reader${i}@example.com` }, {
      attempts: 3,
      backoff: { type: 'fixed', delay: 30000 },
      // Receipts first: a lower number runs earlier (kept in `prioritized`).
      priority: i % 10 === 0 ? 1 : undefined,
    });
  }
  // A reminder in ten minutes counts as Scheduled once it is due.
  await queue.add('reminder', { to: 'late@example.com' }, { delay: 600000 });
  console.log(`added ${count} emails: ${JSON.stringify(await queue.getJobCounts())}`);
  await queue.close();
  await connection.quit();
}

main().catch(e => {
  console.error(e);
  process.exit(1);
});
