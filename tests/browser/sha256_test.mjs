// web/src/sha256.js against Node's crypto on random inputs fed in random pieces (block boundaries, padding).
import crypto from 'node:crypto';
import {Sha256} from '../../web/src/sha256.js';

let checked = 0;
for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 1000, 100003, 1 << 20]) {
  const data = crypto.randomBytes(n);
  const h = new Sha256();
  for (let i = 0; i < n;) {
    const k = Math.min(n - i, 1 + Math.floor(Math.random() * 200));
    h.update(new Uint8Array(data.subarray(i, i + k)));
    i += k;
  }
  const got = h.hex();
  const want = crypto.createHash('sha256').update(data).digest('hex');
  if (got !== want) {
    console.error(`sha256 of ${n} bytes: got ${got}, want ${want}`);
    process.exit(1);
  }
  ++checked;
}
console.log(`sha256_test: ${checked} inputs match node:crypto`);
