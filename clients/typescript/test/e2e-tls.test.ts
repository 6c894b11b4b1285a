// TLS against a real node started with --tls-cert / --tls-key (gRPC over HTTP/2 with ALPN h2):
// a self-signed certificate is refused unless its CA is given as `caPem`. Needs openssl to make
// the certificate; skipped without it.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client, NoEndpointError } from "../src/index.js";
import { fastOptions } from "./options.js";
import { Plane } from "./plane.js";

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe(
  "TLS",
  { timeout: 120_000, skip: hasOpenssl() ? false : "openssl is not installed" },
  () => {
    const certs = mkdtempSync(join(tmpdir(), "haplane-ts-tls-"));
    const cert = join(certs, "cert.pem");
    const key = join(certs, "key.pem");
    let plane: Plane | undefined;

    before(async () => {
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-keyout",
          key,
          "-out",
          cert,
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
        ],
        { stdio: "ignore" },
      );
      plane = await Plane.start([{ id: "a", extraArgs: ["--tls-cert", cert, "--tls-key", key] }]);
    });
    after(async () => {
      await plane?.close();
      rmSync(certs, { recursive: true, force: true });
    });

    it("an https:// node is reached with its CA, and refused without it", async () => {
      const uri = plane!.node("a").uri;
      assert.match(uri, /^https:\/\/127\.0\.0\.1:\d+$/);
      await assert.rejects(
        Client.connect(uri, fastOptions({ failoverTimeoutMs: 2_000 })),
        (err: unknown) => {
          assert.ok(err instanceof NoEndpointError, String(err));
          assert.match(err.message, /certificate/i, "the TLS failure is named");
          return true;
        },
      );
      const client = await Client.connect(uri, fastOptions({ caPem: readFileSync(cert) }));
      try {
        const view = await client.waitForMaster();
        assert.equal(view.master?.uri, uri, "the node advertises its https:// URI");
        assert.equal((await client.putEntity("tls/x", { secure: true })).version, 1n);
      } finally {
        await client.close();
      }
    });
  },
);
