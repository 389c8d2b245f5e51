/** A self-signed certificate for 127.0.0.1, made with the system's openssl, for servers a test starts with TLS. */
import { execFileSync } from "node:child_process";
import { join } from "node:path";

/** Writes `cert.pem` and `key.pem` (EC P-256, valid a day, SAN IP:127.0.0.1) into `dir`; returns their paths. */
export function selfSignedCert(dir: string): { certFile: string; keyFile: string } {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    { stdio: "ignore" },
  );
  return { certFile, keyFile };
}
