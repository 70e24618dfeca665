// Types for callstream-bot (docs/bridge.md, protocol version 2).

/** 16-bit little-endian mono PCM: bytes, or samples. */
export type Pcm = Buffer | Uint8Array | Int16Array;

/** The `start` message. */
export interface StartMessage {
  type: "start";
  version: number;
  call_sid: string;
  stream_sid: string;
  account_sid: string;
  parameters: Record<string, string>;
  [field: string]: unknown;
}

/** Any message from callstream, as it came. */
export interface Message {
  type: string;
  [field: string]: unknown;
}

export interface Utterance {
  /** 16-bit LE mono PCM, decoded. */
  pcm: Buffer;
  rate: number;
  durationMs: number;
  raw: Message;
}

export interface AudioFrame {
  pcm: Buffer;
  rate: number;
  seq: number;
  dropped: number;
  raw: Message;
}

export interface BargeIn {
  /** The marks whose audio was cut. */
  cleared: string[];
  heardMs: number;
  raw: Message;
}

/** `config` fields, as the protocol names them (snake_case). */
export interface ConfigFields {
  rate?: 8000 | 16000 | 24000;
  audio?: boolean;
  version?: 1 | 2;
  utterances?: boolean;
  barge_in?: boolean;
  end_of_turn_ms?: number;
  min_speech_ms?: number;
  /** 0.0 to 1.0: how faint a voice still counts as speech. */
  sensitivity?: number;
  [field: string]: unknown;
}

export class Call {
  /** The whole `start` message once it came; null before. */
  readonly start: StartMessage | null;
  readonly callSid: string | null;
  readonly streamSid: string | null;
  readonly accountSid: string | null;
  readonly parameters: Record<string, string>;
  readonly version: number | null;
  /** Texts of say()s whose marks came back played, in order. */
  readonly heard: string[];
  /** Texts of say()s whose marks have not come back yet. */
  readonly pending: string[];
  /** hangup/transfer/end sent, or stop (or the end of input) received. */
  readonly done: boolean;

  /** Only as the first line the program writes; throws after. */
  config(fields?: ConfigFields): void;
  play(pcm: Pcm, rate: number): void;
  /** exec transport only: a WAV file on callstream's machine. */
  playWav(path: string): void;
  mark(name: string): void;
  /** reply (with text), play, mark; returns the mark's name (`name`, or `reply-N` for the Nth say). */
  say(pcm: Pcm, rate: number, options?: { text?: string; name?: string }): string;
  /** Texts of say()s before these marks that were not played (all not played when omitted). */
  unheard(names?: Iterable<string>): string[];
  clear(): void;
  hangup(): void;
  transfer(to: string, options?: { callerId?: string; timeout?: number }): void;
  end(options?: { say?: string; voice?: string; language?: string }): void;
  sendDigits(digits: string): void;
  reply(text: string): void;
  transcript(text: string): void;
  log(message: string, level?: "debug" | "info" | "warn" | "error"): void;
  /** Any message, as it is. */
  send(msg: Message): void;
}

type Maybe<T> = T | Promise<T>;

export class Bot {
  /** The first line, {"type":"config",...config}; null (the default): none. */
  static config: ConfigFields | null;
  onStart(call: Call): Maybe<void>;
  onUtterance(call: Call, u: Utterance): Maybe<void>;
  onAudio(call: Call, frame: AudioFrame): Maybe<void>;
  onSpeechStarted(call: Call): Maybe<void>;
  onBargeIn(call: Call, b: BargeIn): Maybe<void>;
  onDtmf(call: Call, digit: string): Maybe<void>;
  onMark(call: Call, name: string, played: boolean): Maybe<void>;
  /** Default: a line on stderr. `of`: the type of the refused line, null when it had none. */
  onError(call: Call, of: string | null, reason: string): Maybe<void>;
  onStop(call: Call, reason: string): Maybe<void>;
  onMessage(call: Call, msg: Message): Maybe<void>;
}

export type BotClass = new () => Bot;

/** One call over any transport (what the transports are built on). */
export class Session {
  constructor(BotClass: BotClass, options: { write: (line: string) => void; facts?: { call_sid?: string; stream_sid?: string; account_sid?: string }; label?: string });
  readonly call: Call;
  readonly bot: Bot;
  closed: boolean;
  /** Resolves once the call is over for the bot (after onStop). */
  readonly finished: Promise<void>;
  feed(line: string): void;
  inputEnded(reason: string): void;
}

/** The listening server serveWs resolves with (a `ws` WebSocketServer). */
export interface WsServer {
  address(): { address: string; family: string; port: number } | string | null;
  close(callback?: (err?: Error) => void): void;
  readonly clients: Set<{ terminate(): void; close(code?: number): void }>;
}

/** The protocol version this package speaks. */
export const VERSION: 2;

/**
 * The exec transport (stdin/stdout), or with `--serve-ws HOST:PORT` in argv
 * (default process.argv.slice(2)) the ws transport.
 */
export function run(BotClass: BotClass, argv?: string[]): Session | Promise<WsServer>;

/** The exec transport: one call on stdin/stdout; exits 0 when it is over. */
export function runExec(BotClass: BotClass): Session;

/** The ws transport: one Bot per WebSocket connection. Resolves once listening. */
export function serveWs(BotClass: BotClass, options?: { host?: string; port?: number }): Promise<WsServer>;

export function parseHostPort(text: string): { host: string; port: number };
