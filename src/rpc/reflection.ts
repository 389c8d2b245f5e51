/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so that grpcurl,
 * `buf curl`, Postman and similar tools can list and describe the server's
 * services without a local copy of the protos.
 *
 * @module
 */

import type { DescFile, FileRegistry } from "@bufbuild/protobuf";
import { createFileRegistry, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

// v1 and v1alpha are the same protocol under two package names: the messages
// have the same fields, numbers and types, and so the same generated shapes
// apart from their $typeName. The handler below is written against these
// version-neutral shapes, and each version's generated types are assignable to
// them, so one implementation serves both. (Connect turns the plain response
// objects into messages of the route's own output schema.)

/** ExtensionRequest, as both protocol versions define it. */
interface ExtensionQuery {
  containingType: string;
  extensionNumber: number;
}

/** ServerReflectionRequest, as both protocol versions define it. */
interface ReflectionRequest {
  host: string;
  messageRequest:
    | { case: "fileByFilename"; value: string }
    | { case: "fileContainingSymbol"; value: string }
    | { case: "fileContainingExtension"; value: ExtensionQuery }
    | { case: "allExtensionNumbersOfType"; value: string }
    | { case: "listServices"; value: string }
    | { case: undefined; value?: undefined };
}

/** The message_response oneof of ServerReflectionResponse, in both versions. */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | {
      case: "allExtensionNumbersResponse";
      value: { baseTypeName: string; extensionNumber: number[] };
    }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** ServerReflectionResponse (as an init object), in both versions. */
interface ReflectionResponse {
  validHost: string;
  originalRequest: ReflectionRequest;
  messageResponse: ReflectionAnswer;
}

/**
 * Creates the routes for gRPC server reflection over the given files: both
 * grpc.reflection.v1 and grpc.reflection.v1alpha are registered, since clients
 * try v1 first and fall back to v1alpha (grpcurl, `buf curl`), and older ones
 * only speak v1alpha.
 *
 * `list_services` lists the services declared in `files` themselves: pass the
 * reflection and health files too if those services should be listed. The
 * files' dependencies (e.g. google/protobuf/struct.proto) need not be passed:
 * they are found through the file descriptors and served as well.
 *
 * @param files the generated file descriptors, e.g. `file_streamgate_v1_stream_service`.
 * @returns a function that registers both reflection services on a router.
 */
export function createReflectionRoutes(files: DescFile[]): (router: ConnectRouter) => void {
  const index = createReflectionIndex(files);
  const impl = { serverReflectionInfo: serverReflectionInfo(index) };
  return (router: ConnectRouter): void => {
    router.service(ServerReflectionV1, impl);
    router.service(ServerReflectionV1alpha, impl);
  };
}

/** The lookups reflection needs, built once per set of routes. */
interface ReflectionIndex {
  readonly registry: FileRegistry;
  readonly serviceNames: readonly string[];
  /** The file's serialized FileDescriptorProto followed by those of all its transitive dependencies. */
  fileWithDependencies(file: DescFile): Uint8Array[];
}

function createReflectionIndex(files: DescFile[]): ReflectionIndex {
  // One registry per given file, resolving each import to the already-built
  // DescFile of the dependency (which brings its own dependencies along), then
  // merged: so the registry also knows the well-known types the files import,
  // without anyone having to list them.
  const registry = createFileRegistry(
    ...files.map((file) =>
      createFileRegistry(file.proto, (name) => file.dependencies.find((dep) => dep.proto.name === name)),
    ),
  );
  const serviceNames = [...new Set(files.flatMap((file) => file.services.map((s) => s.typeName)))];

  // Serialized once per file: descriptors never change while the server runs,
  // and clients such as grpcurl ask for the same files over and over.
  const serialized = new Map<string, Uint8Array>();
  function bytesOf(file: DescFile): Uint8Array {
    let bytes = serialized.get(file.proto.name);
    if (bytes === undefined) {
      // file.proto is the descriptor protobuf-es embedded at generation time:
      // comments (source_code_info) were stripped then, json_name and the
      // import list were restored when it was loaded. That is all a client
      // needs to build dynamic messages; `describe` just shows no comments.
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      serialized.set(file.proto.name, bytes);
    }
    return bytes;
  }

  return {
    registry,
    serviceNames,
    fileWithDependencies(file: DescFile): Uint8Array[] {
      // Requested file first, then its imports breadth-first, each once: the
      // order grpc-go uses. Clients must resolve every import before they can
      // build the file, and many (grpcurl, buf curl) do not ask again for a
      // dependency that is missing from the answer.
      const ordered: DescFile[] = [file];
      const seen = new Set([file.proto.name]);
      for (let i = 0; i < ordered.length; i++) {
        for (const dep of ordered[i]!.dependencies) {
          if (!seen.has(dep.proto.name)) {
            seen.add(dep.proto.name);
            ordered.push(dep);
          }
        }
      }
      return ordered.map(bytesOf);
    },
  };
}

/**
 * The one ServerReflectionInfo implementation behind both protocol versions:
 * answers each request on the stream in turn.
 */
function serverReflectionInfo(index: ReflectionIndex) {
  return async function* (requests: AsyncIterable<ReflectionRequest>): AsyncGenerator<ReflectionResponse> {
    for await (const request of requests) {
      yield {
        // This server serves every host it is reached by the same way.
        validHost: request.host,
        originalRequest: request,
        messageResponse: answer(index, request),
      };
    }
  };
}

function answer(index: ReflectionIndex, request: ReflectionRequest): ReflectionAnswer {
  const { registry } = index;
  const query = request.messageRequest;
  switch (query.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: index.serviceNames.map((name) => ({ name })) },
      };
    case "fileByFilename": {
      const file = registry.getFile(query.value);
      return file ? files(index, file) : notFound(`file not found: ${query.value}`);
    }
    case "fileContainingSymbol": {
      const file = fileContainingSymbol(registry, query.value);
      return file ? files(index, file) : notFound(`symbol not found: ${query.value}`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = query.value;
      const message = registry.getMessage(containingType);
      const extension = message && registry.getExtensionFor(message, extensionNumber);
      return extension
        ? files(index, extension.file)
        : notFound(`extension not found: ${containingType} ${extensionNumber}`);
    }
    case "allExtensionNumbersOfType": {
      // A known message with no extensions gets an empty list, an unknown one
      // NOT_FOUND: that is how grpc-go answers, and what clients expect.
      const message = registry.getMessage(query.value);
      if (!message) return notFound(`type not found: ${query.value}`);
      const extensionNumber: number[] = [];
      for (const desc of registry) {
        if (desc.kind === "extension" && desc.extendee.typeName === message.typeName) {
          extensionNumber.push(desc.number);
        }
      }
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: message.typeName, extensionNumber: extensionNumber.sort((a, b) => a - b) },
      };
    }
    case undefined:
      // Answered in-band rather than by failing the call, so that one odd
      // request does not cost a client the whole stream.
      return error(Code.InvalidArgument, "empty or unknown message_request");
  }
}

/**
 * Finds the file declaring a fully-qualified symbol: a message (nested ones
 * and map entries included), enum, service or extension, or a member of one:
 * a method ("pkg.Service.Method"), a field or a oneof ("pkg.Message.field").
 * Enum values are not looked up.
 */
function fileContainingSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  // Some clients send names in the descriptor's ".pkg.Name" form.
  const name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
  const type = registry.get(name);
  if (type) return type.file;
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return undefined;
  const parent = registry.get(name.slice(0, dot));
  const member = name.slice(dot + 1);
  switch (parent?.kind) {
    case "service":
      return parent.methods.some((m) => m.name === member) ? parent.file : undefined;
    case "message":
      // Map entry messages ("pkg.Message.LabelsEntry") are real nested types in
      // the descriptor, but protobuf-es folds them into their map field rather
      // than registering them, so they are looked up in the proto.
      return parent.fields.some((f) => f.name === member) ||
        parent.oneofs.some((o) => o.name === member) ||
        parent.proto.nestedType.some((n) => n.name === member)
        ? parent.file
        : undefined;
    default:
      return undefined;
  }
}

function files(index: ReflectionIndex, file: DescFile): ReflectionAnswer {
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: index.fileWithDependencies(file) } };
}

function notFound(message: string): ReflectionAnswer {
  return error(Code.NotFound, message);
}

function error(code: Code, message: string): ReflectionAnswer {
  // Connect's Code numbers are the gRPC status codes that ErrorResponse carries.
  return { case: "errorResponse", value: { errorCode: code, errorMessage: message } };
}
