/**
 * Per-request cost of verifying an aidlc-auth token: local (warm JWKS cache) and strict
 * (local + introspection over loopback).
 *
 * Usage: AIDLC_AUTH_BIN=/path/to/aidlc-auth npm run bench [-- N]
 * Starts the binary on a loopback port with a throwaway SQLite file, gets a token, and prints
 * the median and mean of N local verifications and of N/10 strict ones.
 */

import { AidlcAuth, settings } from "../src/index.js";
import { INTROSPECTION_SECRET, Service } from "../test/service.js";

async function timings(call: (header: string) => Promise<unknown>, header: string, n: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    await call(header);
    samples.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  return samples;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const line = (name: string, xs: number[]) =>
  `${name.padEnd(30)} median ${median(xs).toFixed(1).padStart(8)} µs   mean ${mean(xs).toFixed(1).padStart(8)} µs   (n=${xs.length})`;

const n = Number(process.argv[2] ?? 5000);
const service = await Service.start();
try {
  const token = (await service.registerUser()).access_token;
  const auth = new AidlcAuth(settings({ url: service.url, issuer: service.issuer, introspectionSecret: INTROSPECTION_SECRET }));
  const header = `Bearer ${token}`;
  await auth.verifyStrict(header); // warms the JWKS cache and the connection
  await timings((h) => auth.verify(h), header, 500);
  const local = await timings((h) => auth.verify(h), header, n);
  const strict = await timings((h) => auth.verifyStrict(h), header, Math.max(Math.floor(n / 10), 50));
  console.log(line("local verify (warm cache)", local));
  console.log(line("strict verify (introspection)", strict));
  console.log(`${"strict mode adds".padEnd(30)} median ${(median(strict) - median(local)).toFixed(1).padStart(8)} µs`);
} finally {
  await service.stop();
}
