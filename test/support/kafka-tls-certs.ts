/**
 * A throwaway certificate authority and a broker certificate it signs, made
 * with the machine's openssl at test time, for a Kafka broker's SSL listener
 * (a PKCS12 keystore, which Java reads) and a client that trusts the CA (a PEM
 * file, as KAFKA_TLS_CA_FILE takes it).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The files {@link makeBrokerCertificates} wrote. */
export interface BrokerCertificates {
  /** The CA's certificate (PEM): what a client trusts. */
  caPem: string;
  /** The broker's key and certificate chain (PKCS12), for ssl.keystore.location. */
  keystore: string;
  /** The keystore's password (ssl.keystore.password and ssl.key.password). */
  keystorePassword: string;
}

/** Runs openssl with `args`; rejects with its stderr. */
async function openssl(args: string[]): Promise<void> {
  try {
    await run("openssl", args, { timeout: 60_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`openssl ${args[0]} failed: ${stderr || String(error)}`);
  }
}

/**
 * Writes into `dir` a CA (valid two days) and a certificate for a broker at
 * `host` (an IP address, as KAFKA_BROKERS gives it: the certificate names it in
 * its subjectAltName, which a TLS client checks) signed by that CA.
 */
export async function makeBrokerCertificates(dir: string, host = "127.0.0.1"): Promise<BrokerCertificates> {
  const caKey = join(dir, "ca.key");
  const caPem = join(dir, "ca.pem");
  const brokerKey = join(dir, "broker.key");
  const brokerCsr = join(dir, "broker.csr");
  const brokerPem = join(dir, "broker.pem");
  const extensions = join(dir, "broker.ext");
  const keystore = join(dir, "broker.p12");
  const keystorePassword = randomBytes(12).toString("hex");

  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    caKey,
    "-out",
    caPem,
    "-days",
    "2",
    "-subj",
    "/CN=streamgate test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    brokerKey,
    "-out",
    brokerCsr,
    "-subj",
    `/CN=${host}`,
  ]);
  await writeFile(
    extensions,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      `subjectAltName=IP:${host}`,
      "",
    ].join("\n"),
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    brokerCsr,
    "-CA",
    caPem,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    brokerPem,
    "-days",
    "2",
    "-extfile",
    extensions,
  ]);
  await openssl([
    "pkcs12",
    "-export",
    "-in",
    brokerPem,
    "-inkey",
    brokerKey,
    "-certfile",
    caPem,
    "-name",
    "broker",
    "-out",
    keystore,
    "-passout",
    `pass:${keystorePassword}`,
  ]);
  return { caPem, keystore, keystorePassword };
}
