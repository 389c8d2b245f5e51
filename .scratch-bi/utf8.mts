import * as http2 from "node:http2";
import { startTestServer } from "../test/support/server.js";

const s = await startTestServer({ MAX_PAYLOAD_BYTES: "1024" });
// SendDataRequest: field1 stream_id = ff fe ; field3 raw = "x"
const msg = Buffer.from([0x0a, 0x02, 0xff, 0xfe, 0x1a, 0x01, 0x78]);
let r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/proto" }, body: msg });
console.log("connect proto", r.status, r.headers.get("content-type"), await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/proto" }, body: Buffer.from([0x0a, 0x09, 1]) });
console.log("truncated proto", r.status, await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" });
console.log("bad json", r.status, await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({streamId: "s", bogus: 1}) });
console.log("unknown", r.status, await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({streamId: 5}) });
console.log("types", r.status, await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({streamId: "s", raw: "data"}) });
console.log("raw str", r.status, await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({streamId: "s", raw: "!!!"}) });
console.log("raw bad b64", r.status, await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/StartStream`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({streamId: "s", processing: {ratePerSecond: "fast"}}) });
console.log("rate str", r.status, await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({streamId: "s", data: null}) });
console.log("data null", r.status, await r.text());
r = await fetch(`${s.baseUrl}/streamgate.v1.StreamService/SendData`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({streamId: "s", raw: "A".repeat(200000)}) });
console.log("huge", r.status, await r.text());

const session = http2.connect(s.baseUrl);
const env = Buffer.alloc(5 + msg.length); env.writeUInt32BE(msg.length, 1); msg.copy(env, 5);
await new Promise<void>((resolve) => {
  const req = session.request({ ":method": "POST", ":path": "/streamgate.v1.StreamService/SendData", "content-type": "application/grpc", te: "trailers" });
  req.on("response", (h) => console.log("grpc headers", h));
  req.on("trailers", (t) => console.log("grpc trailers", t));
  req.on("data", () => {});
  req.on("end", () => resolve());
  req.end(env);
});
session.close();
await s.close();
