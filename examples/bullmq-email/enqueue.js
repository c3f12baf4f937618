// Queues N emails on `email-dispatch`: node enqueue.js 1000 [first-number]
const { Queue } = require('bullmq');

async function main() {
  const count = Number(process.argv[2] ?? 10);
  const first = Number(process.argv[3] ?? 1);
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(first)) {
    console.error('usage: node enqueue.js COUNT [FIRST]   (e.g. node enqueue.js 1000)');
    process.exit(2);
  }
  const queue = new Queue('email-dispatch', {
    connection: { host: process.env.REDIS_HOST ?? 'cache.internal', port: Number(process.env.REDIS_PORT ?? 6379) },
  });
  const adds = [];
  for (let n = first; n < first + count; n++) {
    const id = `email-${n}`;
    const data = { id, to: `user${n}@example.com`, subject: `Your receipt ${n}`, text: `Hello, this is email ${n}.` };
    // Three tries with backoff before a job lands in the failed set; finished jobs are not kept forever.
    adds.push(queue.add('send', data, { attempts: 3, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: 10000 }));
  }
  await Promise.all(adds);  // ioredis pipelines the commands: 1,000 adds take well under a second
  console.log(`queued ${count} emails on email-dispatch (email-${first} .. email-${first + count - 1})`);
  await queue.close();
}

main().catch((err) => {
  console.error(`enqueue: ${err.message}`);
  process.exit(1);
});
