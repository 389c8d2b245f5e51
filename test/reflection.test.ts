import type { MessageInitShape } from "@bufbuild/protobuf";
import { create, fromBinary } from "@bufbuild/protobuf";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_streamgate_v1_stream_service, StreamService } from "../gen/streamgate/v1/stream_service_pb.js";
import { createHealthService } from "../src/rpc/health.js";
import { createReflectionRoutes } from "../src/rpc/reflection.js";

const reflectionRoutes = createReflectionRoutes([
  file_streamgate_v1_stream_service,
  file_grpc_health_v1_health,
  v1.file_grpc_reflection_v1_reflection,
  v1alpha.file_grpc_reflection_v1alpha_reflection,
]);

function routes(router: ConnectRouter): void {
  reflectionRoutes(router);
  createHealthService().routes(router);
  // No methods: reflection only needs the service to exist.
  router.service(StreamService, {});
}

const transport = createRouterTransport(routes);

type Request = MessageInitShape<typeof v1.ServerReflectionRequestSchema>;

/** Sends the requests on one v1 stream and collects the responses. */
async function askV1(...requests: Request[]): Promise<v1.ServerReflectionResponse[]> {
  const client = createClient(v1.ServerReflection, transport);
  const responses: v1.ServerReflectionResponse[] = [];
  for await (const res of client.serverReflectionInfo(iterate(requests))) responses.push(res);
  return responses;
}

async function ask(request: Request): Promise<v1.ServerReflectionResponse> {
  const [response] = await askV1(request);
  expect(response).toBeDefined();
  return response!;
}

async function* iterate<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

function decodeFiles(response: v1.ServerReflectionResponse | v1alpha.ServerReflectionResponse): FileDescriptorProto[] {
  expect(response.messageResponse.case).toBe("fileDescriptorResponse");
  if (response.messageResponse.case !== "fileDescriptorResponse") return [];
  return response.messageResponse.value.fileDescriptorProto.map((bytes) =>
    fromBinary(FileDescriptorProtoSchema, bytes),
  );
}

/** Every import of every returned file is itself among the returned files. */
function expectSelfContained(files: FileDescriptorProto[]): void {
  const names = new Set(files.map((f) => f.name));
  expect(names.size).toBe(files.length);
  for (const file of files) {
    for (const dep of file.dependency) expect(names, `${file.name} imports ${dep}`).toContain(dep);
  }
}

describe("reflection v1", () => {
  it("lists the services of the given files", async () => {
    const res = await ask({ host: "example", messageRequest: { case: "listServices", value: "" } });
    expect(res.validHost).toBe("example");
    expect(res.originalRequest?.messageRequest.case).toBe("listServices");
    expect(res.messageResponse.case).toBe("listServicesResponse");
    if (res.messageResponse.case !== "listServicesResponse") return;
    const names = res.messageResponse.value.service.map((s) => s.name);
    expect(names).toEqual(
      expect.arrayContaining([
        "streamgate.v1.StreamService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]),
    );
    expect(names).toHaveLength(4);
  });

  it("answers file_containing_symbol for a service with the file and all its dependencies", async () => {
    const res = await ask({
      messageRequest: { case: "fileContainingSymbol", value: "streamgate.v1.StreamService" },
    });
    expect(res.originalRequest?.messageRequest).toEqual({
      case: "fileContainingSymbol",
      value: "streamgate.v1.StreamService",
    });
    const files = decodeFiles(res);
    expect(files[0]?.name).toBe("streamgate/v1/stream_service.proto");
    expect(files.map((f) => f.name)).toEqual(
      expect.arrayContaining(["google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]),
    );
    expectSelfContained(files);
    const main = files[0]!;
    expect(main.dependency).toEqual(["google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]);
    expect(main.service.map((s) => s.name)).toEqual(["StreamService"]);
    // Embedded descriptors drop json_name; protobuf-es restores it on load, and
    // the served descriptor carries it again.
    const sendData = main.messageType.find((m) => m.name === "SendDataRequest");
    expect(sendData?.field.find((f) => f.name === "stream_id")?.jsonName).toBe("streamId");
  });

  it("answers file_containing_symbol for methods, nested messages, enums and fields", async () => {
    for (const symbol of [
      "streamgate.v1.StreamService.SendData",
      "streamgate.v1.SendDataRequest",
      "streamgate.v1.Stream.LabelsEntry",
      "streamgate.v1.StreamState",
      "streamgate.v1.SendDataRequest.stream_id",
      ".streamgate.v1.Result",
    ]) {
      const files = decodeFiles(await ask({ messageRequest: { case: "fileContainingSymbol", value: symbol } }));
      expect(files[0]?.name, symbol).toBe("streamgate/v1/stream_service.proto");
    }
    const wkt = decodeFiles(
      await ask({ messageRequest: { case: "fileContainingSymbol", value: "google.protobuf.Value" } }),
    );
    expect(wkt.map((f) => f.name)).toEqual(["google/protobuf/struct.proto"]);
  });

  it("answers unknown symbols, files and methods with error_response NOT_FOUND", async () => {
    const responses = await askV1(
      { messageRequest: { case: "fileContainingSymbol", value: "streamgate.v1.Nope" } },
      { messageRequest: { case: "fileContainingSymbol", value: "streamgate.v1.StreamService.Nope" } },
      { messageRequest: { case: "fileByFilename", value: "nope.proto" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "streamgate.v1.Nope" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "streamgate.v1.SendDataRequest", extensionNumber: 100 },
        },
      },
    );
    expect(responses).toHaveLength(5);
    for (const res of responses) {
      expect(res.messageResponse.case).toBe("errorResponse");
      if (res.messageResponse.case === "errorResponse") expect(res.messageResponse.value.errorCode).toBe(5);
    }
  });

  it("answers file_by_filename and extension numbers of a known type", async () => {
    const [byName, numbers] = await askV1(
      { messageRequest: { case: "fileByFilename", value: "google/protobuf/struct.proto" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "streamgate.v1.SendDataRequest" } },
    );
    expect(decodeFiles(byName!).map((f) => f.name)).toEqual(["google/protobuf/struct.proto"]);
    expect(numbers?.messageResponse).toEqual({
      case: "allExtensionNumbersResponse",
      value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: "streamgate.v1.SendDataRequest" }),
    });
  });
});

describe("reflection v1alpha", () => {
  it("serves the same answers as v1", async () => {
    const client = createClient(v1alpha.ServerReflection, transport);
    const responses: v1alpha.ServerReflectionResponse[] = [];
    const requests: MessageInitShape<typeof v1alpha.ServerReflectionRequestSchema>[] = [
      { host: "h", messageRequest: { case: "listServices", value: "*" } },
      { messageRequest: { case: "fileContainingSymbol", value: "streamgate.v1.StreamService" } },
      { messageRequest: { case: "fileContainingSymbol", value: "no.such.Symbol" } },
    ];
    for await (const res of client.serverReflectionInfo(iterate(requests))) responses.push(res);
    expect(responses).toHaveLength(3);
    const [list, file, missing] = responses;

    expect(list?.$typeName).toBe("grpc.reflection.v1alpha.ServerReflectionResponse");
    expect(list?.validHost).toBe("h");
    expect(list?.originalRequest?.$typeName).toBe("grpc.reflection.v1alpha.ServerReflectionRequest");
    expect(list?.messageResponse.case).toBe("listServicesResponse");
    if (list?.messageResponse.case === "listServicesResponse") {
      expect(list.messageResponse.value.service.map((s) => s.name)).toContain("streamgate.v1.StreamService");
    }

    const files = decodeFiles(file!);
    expect(files[0]?.name).toBe("streamgate/v1/stream_service.proto");
    expect(files.map((f) => f.name)).toContain("google/protobuf/struct.proto");
    expectSelfContained(files);

    expect(missing?.messageResponse.case).toBe("errorResponse");
    if (missing?.messageResponse.case === "errorResponse") expect(missing.messageResponse.value.errorCode).toBe(5);
  });
});
