/**
 * Request limits shared through Redis (REDIS_URL): the token buckets, and the
 * settings with their generation, so that every instance on the same Redis
 * spends one budget and applies a change at once.
 *
 * A take is one Lua script over the buckets it needs (client, then global):
 * each bucket is refilled for the time since it was last touched (Redis's own
 * clock, so instances' clocks do not matter), then gives a token or refuses,
 * atomically. bottleneck's clustering mode was not used for this: it checks a
 * bucket and takes from it in two scripts, and a call that loses the last
 * token to another instance between the two is queued until the next refill
 * instead of being refused, and calls after it queue behind it.
 *
 * Settings are one JSON value; an update stores it with the next generation in
 * one script and publishes it. Each instance applies what it receives, and
 * reads the value again whenever its subscription (re)connects, so a change
 * missed while disconnected is not missed for good. The first instance seeds
 * the value from its environment; later instances adopt what is stored, so a
 * restart does not undo UpdateLimits.
 */
import { Redis } from "ioredis";
import type { BucketConfig, LimitsConfig } from "../../config/config.js";
import type { Logger } from "../../observe/logger.js";
import type { LimitSettingsStore } from "./limit-settings.js";
import type { BucketRef, BucketStore, Buckets, VersionedLimits } from "./limits.js";

/**
 * KEYS: the buckets in order; ARGV: rate and burst of each. Returns
 * {0, "0"} when every bucket gave a token, else {index (1-based), ms until a
 * token}. A bucket never touched is full. A bucket idle long enough to be full
 * again expires, which is the same as full.
 */
const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
    ts = now
  end
  local refused = tokens < 1
  if not refused then tokens = tokens - 1 end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(ts))
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) * 1000 / rate) + 1000)
  if refused then return {i, tostring((1 - tokens) * 1000 / rate)} end
end
return {0, '0'}
`;

/** KEYS[1]: a bucket; ARGV: its rate and burst. Returns its tokens now, as a string. */
const LEVEL_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
return tostring(tokens)
`;

/**
 * KEYS[1]: the settings; ARGV[1]: the new settings' JSON without a generation.
 * Stores them with the stored generation plus one, publishes them on the
 * channel of the same name, and returns what was stored.
 */
const UPDATE_SCRIPT = `
local current = redis.call('GET', KEYS[1])
local generation = 0
if current then generation = tonumber(cjson.decode(current).generation) or 0 end
local settings = cjson.decode(ARGV[1])
settings.generation = generation + 1
local encoded = cjson.encode(settings)
redis.call('SET', KEYS[1], encoded)
redis.call('PUBLISH', KEYS[1], encoded)
return encoded
`;

/** The stored form: JSON has no undefined. */
interface StoredLimits {
  generation: number;
  global: BucketConfig | null;
  client: BucketConfig | null;
  clientMaxWatchers: number | null;
}

/** The stored form of `limits`; the generation is added by the update script, or given for the first seed. */
function encode(limits: LimitsConfig, generation?: number): string {
  const stored: Omit<StoredLimits, "generation"> & { generation?: number } = {
    global: limits.global ?? null,
    client: limits.client ?? null,
    clientMaxWatchers: limits.clientMaxWatchers ?? null,
    generation,
  };
  return JSON.stringify(stored);
}

function decodeBucket(value: unknown): BucketConfig | undefined {
  if (value === null || value === undefined) return undefined;
  const { rps, burst } = value as Partial<BucketConfig>;
  if (!Number.isInteger(rps) || !Number.isInteger(burst) || rps! < 1 || burst! < 1) throw new Error("bad bucket");
  return { rps: rps!, burst: burst! };
}

/** Parses stored settings; throws on anything that is not what {@link encode} wrote. */
function decode(json: string): VersionedLimits {
  const stored = JSON.parse(json) as Partial<StoredLimits>;
  if (!Number.isInteger(stored.generation)) throw new Error("no generation");
  const watchers = stored.clientMaxWatchers;
  if (watchers !== null && watchers !== undefined && !(Number.isInteger(watchers) && watchers > 0)) {
    throw new Error("bad clientMaxWatchers");
  }
  return {
    generation: stored.generation!,
    global: decodeBucket(stored.global),
    client: decodeBucket(stored.client),
    clientMaxWatchers: watchers ?? undefined,
  };
}

/** What {@link connectRedisLimits} returns. */
export interface RedisLimits {
  buckets: BucketStore;
  settings: LimitSettingsStore;
}

/**
 * Connects to Redis at `url`; fails when it does not answer. Keys begin with
 * `prefix`. When Redis is unreachable later, takes are allowed (the service
 * keeps serving) and a warning is logged at most every 10 s.
 */
export async function connectRedisLimits(url: string, prefix: string, logger: Logger): Promise<RedisLimits> {
  const options = {
    lazyConnect: true,
    connectTimeout: 5_000,
    // Fail a command at once while disconnected instead of queueing it: a limit check must not wait.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
  };
  const client = new Redis(url, options);
  const subscriber = new Redis(url, { ...options, enableOfflineQueue: true });
  client.on("error", () => undefined); // reported by the failing commands
  subscriber.on("error", () => undefined);
  try {
    await client.connect();
    await subscriber.connect();
  } catch (error) {
    client.disconnect();
    subscriber.disconnect();
    throw new Error(`cannot reach Redis at REDIS_URL: ${(error as Error).message}`);
  }

  let warnedAt = 0;
  const warn = (error: unknown) => {
    if (Date.now() - warnedAt < 10_000) return;
    warnedAt = Date.now();
    logger.warn(
      { err: (error as Error).message },
      "Redis unreachable: request limits are not enforced until it answers",
    );
  };

  const settingsKey = `${prefix}limits`;
  const buckets: BucketStore = (generation) => {
    const keyOf = (ref: BucketRef) => `${prefix}bucket:${generation}:${ref.key}`;
    const store: Buckets = {
      async take(refs) {
        try {
          const args = refs.flatMap((ref) => [ref.bucket.rps, ref.bucket.burst]);
          const [index, ms] = (await client.eval(TAKE_SCRIPT, refs.length, ...refs.map(keyOf), ...args)) as [
            number,
            string,
          ];
          return { refusedAt: index - 1, retryMs: Math.ceil(Number(ms)) };
        } catch (error) {
          warn(error);
          return { refusedAt: -1, retryMs: 0 };
        }
      },
      async level(ref) {
        try {
          return Number(await client.eval(LEVEL_SCRIPT, 1, keyOf(ref), ref.bucket.rps, ref.bucket.burst));
        } catch (error) {
          warn(error);
          return ref.bucket.burst;
        }
      },
      // The keys expire by themselves once full.
      close: async () => undefined,
    };
    return store;
  };

  const listeners: Array<(settings: VersionedLimits) => void> = [];
  const deliver = (json: string | null) => {
    if (json === null) return;
    try {
      const settings = decode(json);
      for (const listener of listeners) listener(settings);
    } catch (error) {
      logger.error({ key: settingsKey, err: (error as Error).message }, "ignoring malformed limits stored in Redis");
    }
  };
  subscriber.on("message", (channel: string, message: string) => {
    if (channel === settingsKey) deliver(message);
  });
  await subscriber.subscribe(settingsKey);
  // After a reconnect ioredis subscribes again by itself; what was published meanwhile is read back.
  subscriber.on("ready", () => {
    client.get(settingsKey).then(deliver, warn);
  });

  const settings: LimitSettingsStore = {
    shared: true,
    async load(initial) {
      await client.set(settingsKey, encode(initial, 1), "NX");
      const stored = await client.get(settingsKey);
      return decode(stored!);
    },
    async update(next) {
      return decode((await client.eval(UPDATE_SCRIPT, 1, settingsKey, encode(next))) as string);
    },
    onChange(listener) {
      listeners.push(listener);
    },
    async close() {
      listeners.length = 0;
      await Promise.allSettled([client.quit(), subscriber.quit()]);
    },
  };
  return { buckets, settings };
}
