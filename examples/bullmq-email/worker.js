// Sends the emails queued on `email-dispatch`. Each job's data: {id, to, subject, text}.
const { Worker } = require('bullmq');
const nodemailer = require('nodemailer');

const env = (name, fallback) => process.env[name] ?? fallback;
// The project's own Redis (`type: redis`, name cache): no password on its private address.
const connection = { host: env('REDIS_HOST', 'cache.internal'), port: Number(env('REDIS_PORT', 6379)) };
const replica = env('STACKBLAZE_REPLICA', '?');

// No auth, no TLS: a local relay (Postfix, a sidecar, Mailpit) that forwards the mail.
const mailer = nodemailer.createTransport({
  host: env('SMTP_HOST', '127.0.0.1'),
  port: Number(env('SMTP_PORT', 1025)),
  secure: false,
  ignoreTLS: true,
});

const worker = new Worker(
  'email-dispatch',
  async (job) => {
    const info = await mailer.sendMail({
      from: env('MAIL_FROM', 'noreply@example.com'),
      to: job.data.to,
      subject: job.data.subject,
      text: job.data.text,
      // The sender's own id for this email, so the receiving side can tell a retry from a new email.
      headers: { 'X-Job-Id': job.data.id },
    });
    console.log(`replica ${replica}: sent ${job.data.id} to ${job.data.to} (${info.messageId})`);
    return info.messageId;
  },
  {
    connection,
    concurrency: Number(env('WORKER_CONCURRENCY', 5)),
    // How long a job stays ours without renewing its lock, and how often stalled jobs are looked for:
    // a worker that died (kill -9, OOM) gives its jobs back after at most about lockDuration + stalledInterval.
    lockDuration: Number(env('BULLMQ_LOCK_DURATION_MS', 30000)),
    stalledInterval: Number(env('BULLMQ_STALLED_INTERVAL_MS', 30000)),
  },
);

worker.on('ready', () => console.log(`replica ${replica}: waiting for jobs on email-dispatch`));
worker.on('failed', (job, err) => {
  console.error(`replica ${replica}: ${job ? job.data.id : 'a job'} failed (attempt ${job ? job.attemptsMade : '?'}): ${err.message}`);
});
worker.on('error', (err) => console.error(`replica ${replica}: ${err.message}`));

// stackblaze (like Kubernetes) sends SIGTERM, then SIGKILL after shutdown_grace: finish the jobs in hand.
let closing = false;
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, async () => {
    if (closing) return;
    closing = true;
    console.log(`replica ${replica}: ${signal} received, finishing the jobs in hand`);
    await worker.close();
    mailer.close();
    console.log(`replica ${replica}: closed gracefully`);
    process.exit(0);
  });
}
