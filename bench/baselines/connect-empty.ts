/**
 * Baseline: a bare connect-node server on the same one-port listener as
 * streamgate (src/rpc/listener.ts), serving StreamService with empty handlers: no
 * interceptors, no validation, no broker. What the RPC layer alone can do on
 * this machine. Listens on PORT.
 */
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { StreamService } from "../../gen/streamgate/v1/stream_service_pb.js";
import { listen } from "../../src/rpc/listener.js";

const rpc = connectNodeAdapter({
  routes: (router) =>
    router.service(StreamService, {
      async startStream() {
        return {};
      },
      async sendData() {
        return { cursor: "i-0-0" };
      },
      async sendDataStream(requests) {
        let accepted = 0n;
        for await (const _ of requests) accepted++;
        return { accepted };
      },
    }),
});
await listen({ port: Number(process.env.PORT), host: "127.0.0.1", tls: undefined, handler: rpc });
