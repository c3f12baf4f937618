// The tests' BullMQ client: `node bullmq_client.js PORT ops JSON` runs the ops in order and exits;
// `node bullmq_client.js PORT work QUEUE CONCURRENCY RELEASE` runs a Worker whose jobs hold their slot until the
// file RELEASE exists.
const fs = require('fs');
const { Queue, Worker } = require('bullmq');

const [port, mode, ...rest] = process.argv.slice(2);
const connection = { host: '127.0.0.1', port: Number(port) };

async function runOps(ops) {
  const queues = new Map();
  const queue = (name) => {
    if (!queues.has(name)) queues.set(name, new Queue(name, { connection }));
    return queues.get(name);
  };
  for (const op of ops) {
    if (op.op === 'add') await queue(op.queue).add(op.name || 'job', op.data || {}, op.opts || {});
    else if (op.op === 'pause') await queue(op.queue).pause();
    else if (op.op === 'resume') await queue(op.queue).resume();
    else throw new Error(`unknown op ${op.op}`);
  }
  for (const q of queues.values()) await q.close();
}

async function work(name, concurrency, release) {
  const worker = new Worker(name, async () => {
    const deadline = Date.now() + 60000;
    while (!fs.existsSync(release) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }, { connection, concurrency: Number(concurrency) });
  process.on('SIGTERM', async () => { await worker.close(true); process.exit(0); });
}

if (mode === 'ops') runOps(JSON.parse(rest[0])).catch((e) => { console.error(e); process.exit(1); });
else work(...rest);
