/**
 * Baseline: a bare @grpc/grpc-js server (the other Node gRPC stack) serving
 * StreamService's SendData, StartStream and SendDataStream with empty
 * handlers, protos loaded by @grpc/proto-loader. Listens on PORT.
 */

import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";

// Started from the project root (bench/lib/processes.ts), compiled or not.
const protoDir = join(process.cwd(), "proto");
const definition = loader.loadSync(join(protoDir, "streamgate/v1/stream_service.proto"), { includeDirs: [protoDir] });
const service = (grpc.loadPackageDefinition(definition) as any).streamgate.v1.StreamService
  .service as grpc.ServiceDefinition;

const server = new grpc.Server();
server.addService(service, {
  startStream: (_call: unknown, callback: grpc.sendUnaryData<object>) => callback(null, {}),
  sendData: (_call: unknown, callback: grpc.sendUnaryData<object>) => callback(null, { cursor: "i-0-0" }),
  sendDataStream: (call: grpc.ServerReadableStream<object, object>, callback: grpc.sendUnaryData<object>) => {
    let accepted = 0;
    call.on("data", () => accepted++);
    call.on("end", () => callback(null, { accepted }));
  },
});
server.bindAsync(`127.0.0.1:${process.env.PORT}`, grpc.ServerCredentials.createInsecure(), (error) => {
  if (error) throw error;
});
