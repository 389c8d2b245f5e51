/**
 * Each stream's CEL filter and transform, compiled once and kept: StartStream
 * compiles them to check them and keeps what it compiled; the processor takes
 * them from here (compiling only a stream started on another instance, or
 * one evicted since). Bounded by source length: a long expression compiles to
 * about 55 bytes of heap per character.
 */
import type { Processing } from "../../gen/streamgate/v1/stream_service_pb.js";
import { Lru } from "../common/lru.js";
import type { StreamKey } from "../streams/stream-key.js";
import type { CelCompiler, CelProgram } from "./cel.js";

/**
 * Characters of stream expressions kept compiled (about 220 MB of heap at
 * most): 500 streams with the longest filter and transform, or tens of
 * thousands with typical ones. Past it, the least recently used are compiled
 * again when needed.
 */
const PROGRAM_CACHE_CHARS = 4_000_000;

/** A stream's compiled expressions; undefined where the stream has none. */
export interface CompiledProcessing {
  filter: CelProgram | undefined;
  transform: CelProgram | undefined;
  /** The length of both sources: the cache's measure of what the programs hold. */
  sourceLength: number;
}

/** See the module comment. */
export class StreamPrograms {
  private readonly programs = new Lru<StreamKey, CompiledProcessing>(
    PROGRAM_CACHE_CHARS,
    (programs) => programs.sourceLength,
  );

  constructor(private readonly cel: CelCompiler) {}

  /**
   * Compiles a stream's expressions, naming the fields `<prefix>filter` and
   * `<prefix>transform` in an error (DomainError "invalid"). Nothing is kept
   * until {@link keep}: a StartStream that fails after its check keeps nothing.
   */
  compile(processing: Processing, prefix = ""): CompiledProcessing {
    return {
      filter: processing.filter === "" ? undefined : this.cel.compile(processing.filter, `${prefix}filter`),
      transform: processing.transform === "" ? undefined : this.cel.compile(processing.transform, `${prefix}transform`),
      sourceLength: processing.filter.length + processing.transform.length,
    };
  }

  /** Keeps a stream's compiled expressions. */
  keep(key: StreamKey, programs: CompiledProcessing): void {
    this.programs.set(key, programs);
  }

  /** A stream's programs: kept, or compiled and kept now. */
  of(key: StreamKey, processing: Processing): CompiledProcessing {
    let programs = this.programs.get(key);
    if (!programs) {
      programs = this.compile(processing);
      this.keep(key, programs);
    }
    return programs;
  }

  /** Forgets a stream's programs (it closed, or was removed). */
  delete(key: StreamKey): void {
    this.programs.delete(key);
  }
}
