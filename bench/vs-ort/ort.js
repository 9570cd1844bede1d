// ort.js drives ONNX Runtime for bench/vs-ort: it loads MODEL with THREADS
// intra-op threads, answers "ready" on stdout, then for each stdin line
// "BATCH SECONDS" runs session.run on one random batch until SECONDS have
// passed and answers one JSON line {"batch":…,"runs":…,"seconds":…}.
// The first request for a batch size also warms the session up. It exits
// at end of input. Benchmark tooling only.
'use strict';
const ort = require('onnxruntime-node');
const readline = require('readline');

async function main() {
  const [path, threadsArg, channelsArg] = process.argv.slice(2);
  const threads = parseInt(threadsArg || '2', 10);
  const channels = parseInt(channelsArg || '1', 10);
  const s = await ort.InferenceSession.create(path, {
    intraOpNumThreads: threads, interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const inName = s.inputNames[0];
  const inputs = new Map();
  const input = async (b) => {
    if (!inputs.has(b)) {
      const x = new ort.Tensor('float32', new Float32Array(b * channels * 28 * 28).map(() => Math.random()), [b, channels, 28, 28]);
      inputs.set(b, {[inName]: x});
      for (let i = 0; i < 5; i++) await s.run(inputs.get(b));
    }
    return inputs.get(b);
  };
  console.log(JSON.stringify({ready: true, version: require('onnxruntime-node/package.json').version}));
  const rl = readline.createInterface({input: process.stdin});
  for await (const line of rl) {
    const [b, secs] = line.trim().split(/\s+/).map(Number);
    if (!(b > 0) || !(secs > 0)) continue;
    const feed = await input(b);
    let n = 0;
    const t0 = process.hrtime.bigint();
    let dt = 0;
    do {
      await s.run(feed);
      n++;
      dt = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (dt < secs);
    console.log(JSON.stringify({batch: b, runs: n, seconds: dt}));
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
