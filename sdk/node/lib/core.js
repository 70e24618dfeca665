"use strict";
// The transport-free part: the Bot base class, the Call a bot talks through,
// and the Session that turns lines into handler calls, one at a time, in order.
// Message fields are the protocol's (docs/bridge.md, bridge/src/protocol.rs).

const os = require("node:os");

/** Prefix of every line this package writes to stderr (callstream's log). */
const TAG = "callstream-bot:";

/** The protocol version this package speaks (and `start` says). */
const VERSION = 2;

function excerpt(text, n = 80) {
  const s = String(text);
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** 16-bit LE mono PCM as a Buffer, from a Buffer, a Uint8Array or an Int16Array. */
function pcmBytes(pcm) {
  let bytes;
  if (Buffer.isBuffer(pcm)) bytes = pcm;
  else if (pcm instanceof Int16Array) {
    bytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    if (os.endianness() === "BE") bytes = Buffer.from(bytes).swap16();
  } else if (pcm instanceof Uint8Array) bytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  else throw new TypeError("pcm must be a Buffer, Uint8Array or Int16Array of 16-bit LE mono samples");
  if (bytes.length % 2 !== 0) throw new RangeError(`pcm has an odd number of bytes (${bytes.length}): not whole 16-bit samples`);
  return bytes;
}

function checkRate(rate) {
  if (!Number.isInteger(rate) || rate <= 0) throw new TypeError(`rate must be a positive integer (Hz), not ${rate}`);
}

function checkString(value, what) {
  if (typeof value !== "string") throw new TypeError(`${what} must be a string`);
}

/** A JSON object with only the fields that are set (undefined and null left out). */
function defined(msg) {
  for (const k of Object.keys(msg)) if (msg[k] === undefined || msg[k] === null) delete msg[k];
  return msg;
}

/**
 * One call, as a bot sees it: the facts from `start` and one method per
 * line a program may write. Created by the transport, passed to every handler.
 */
class Call {
  constructor(session, facts = {}) {
    this._session = session;
    this._facts = facts;
    /** The whole `start` message, once it came (null before). */
    this.start = null;
    /** Texts of `say()`s whose marks came back `played`, in order. */
    this.heard = [];
    this._says = new Map(); // mark name -> { text, outcome }
    this._sayCount = 0;
    this._sent = false;
    this._ended = false; // hangup, transfer or end sent
    this._endedBy = null; // which of them
    this._stopped = false; // stop received, or the input ended
  }

  get callSid() { return this.start?.call_sid ?? this._facts.call_sid ?? null; }
  get streamSid() { return this.start?.stream_sid ?? this._facts.stream_sid ?? null; }
  get accountSid() { return this.start?.account_sid ?? this._facts.account_sid ?? null; }
  get parameters() { return this.start?.parameters ?? {}; }
  get version() { return this.start?.version ?? null; }
  /** True once the call is over for the bot: hangup/transfer/end sent, or stop (or end of input) received. */
  get done() { return this._ended || this._stopped; }

  /** Writes one message as it is (a type this package does not know yet, say). */
  send(msg) {
    if (msg === null || typeof msg !== "object" || typeof msg.type !== "string") {
      throw new TypeError("a message is an object with a string type");
    }
    this._sent = true;
    this._session.write(JSON.stringify(msg));
  }

  /** `{"type":"config",...}`: only as the first line the program writes. */
  config(fields = {}) {
    if (this._sent) throw new Error("config is only taken as the first line: something was sent already");
    if (fields === null || typeof fields !== "object") throw new TypeError("config fields must be an object");
    this.send({ type: "config", ...fields });
  }

  /** Queues audio: `{"type":"play","rate":R,"pcm":"<base64>"}`. */
  play(pcm, rate) {
    const bytes = pcmBytes(pcm);
    checkRate(rate);
    this.send({ type: "play", rate, pcm: bytes.toString("base64") });
  }

  /** Queues a WAV file on callstream's machine (exec transport only): `{"type":"play","wav":path}`. */
  playWav(path) {
    checkString(path, "path");
    this.send({ type: "play", wav: path });
  }

  /** `{"type":"mark","name":name}`: the name comes back in onMark once the audio before it is done. */
  mark(name) {
    checkString(name, "mark name");
    this.send({ type: "mark", name });
  }

  /**
   * Says something: `reply` (when `text` is given), `play`, `mark`. Returns
   * the mark's name (`name`, or `reply-N` for the call's Nth say()); once it
   * comes back played, `text` is in `call.heard`.
   */
  say(pcm, rate, { text, name } = {}) {
    const bytes = pcmBytes(pcm);
    checkRate(rate);
    const hasText = text !== undefined && text !== null;
    if (hasText) checkString(text, "text");
    if (name !== undefined && name !== null) checkString(name, "mark name");
    this._sayCount += 1;
    const mark = name ?? `reply-${this._sayCount}`;
    if (hasText) {
      this._says.set(mark, { text, outcome: null });
      this.reply(text);
    }
    this.send({ type: "play", rate, pcm: bytes.toString("base64") });
    this.mark(mark);
    return mark;
  }

  /**
   * The texts of `say()`s before these marks that were not played (pass a
   * barge-in's `cleared`); all of them not played yet or cleared when `names` is omitted.
   */
  unheard(names) {
    const list = names === undefined ? [...this._says.keys()] : names;
    const out = [];
    for (const n of list) {
      const s = this._says.get(n);
      if (s && s.outcome !== "played") out.push(s.text);
    }
    return out;
  }

  /** Texts of `say()`s whose marks have not come back yet. */
  get pending() {
    return [...this._says.values()].filter((s) => s.outcome === null).map((s) => s.text);
  }

  clear() { this.send({ type: "clear" }); }

  hangup() {
    this.send({ type: "hangup" });
    this._endWith("hangup");
  }

  transfer(to, { callerId, timeout } = {}) {
    checkString(to, "to");
    this.send(defined({ type: "transfer", to, caller_id: callerId, timeout }));
    this._endWith("transfer");
  }

  end({ say, voice, language } = {}) {
    this.send(defined({ type: "end", say, voice, language }));
    this._endWith("end");
  }

  _endWith(type) {
    this._ended = true;
    this._endedBy = type;
  }

  sendDigits(digits) {
    checkString(digits, "digits");
    this.send({ type: "send_digits", digits });
  }

  reply(text) {
    checkString(text, "text");
    this.send({ type: "reply", text });
  }

  transcript(text) {
    checkString(text, "text");
    this.send({ type: "transcript", text });
  }

  log(message, level = "info") {
    checkString(message, "message");
    checkString(level, "level");
    this.send({ type: "log", level, message });
  }

  _resolved(name, outcome) {
    const s = this._says.get(name);
    if (!s || s.outcome !== null) return;
    s.outcome = outcome;
    if (outcome === "played") this.heard.push(s.text);
  }
}

/** Subclass it and override the handlers you need; each may be async. */
class Bot {
  onStart(call) {}
  onUtterance(call, u) {}
  onAudio(call, frame) {}
  onSpeechStarted(call) {}
  onBargeIn(call, b) {}
  onDtmf(call, digit) {}
  onMark(call, name, played) {}
  onError(call, of, reason) {
    call._session.warn(`callstream refused ${of === null ? "a line" : `a ${of}`}: ${reason}`);
  }
  onStop(call, reason) {}
  onMessage(call, msg) {}
}
/** The first line, `{"type":"config",...this}`; null: none. */
Bot.config = null;

/**
 * One call over any transport: `feed()` it the lines (or text frames) from
 * callstream, `inputEnded()` when they stop; `write` gets each line out
 * (without its newline). `finished` resolves once the bot is done.
 */
class Session {
  constructor(BotClass, { write, facts = {}, label = "" } = {}) {
    if (typeof BotClass !== "function") throw new TypeError("expected a Bot class");
    this._write = write;
    this._label = label;
    this.closed = false; // the transport is gone: writes are dropped
    this.call = new Call(this, facts);
    this._stopSeen = false;
    this._over = false;
    this._logSid = null;
    this._tail = Promise.resolve();
    this.finished = new Promise((resolve) => { this._finish = resolve; });
    // The config line goes out before the (perhaps slow) constructor runs.
    const config = BotClass.config;
    if (config !== null && config !== undefined) this.call.config(config);
    this.bot = new BotClass();
  }

  write(line) {
    if (!this.closed) this._write(line);
  }

  warn(text) {
    const sid = this._logSid ?? this.call.callSid;
    const who = sid ? ` [${sid}]` : this._label ? ` [${this._label}]` : "";
    process.stderr.write(`${TAG}${who} ${text}\n`);
  }

  /** One line from callstream. Bad lines are ignored with one stderr line. */
  feed(text) {
    if (this._stopSeen) return; // stop is the last message
    const line = String(text).trim();
    if (line === "") return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      this.warn(`ignored a line that is not JSON: ${excerpt(line)}`);
      return;
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
      this.warn(`ignored a line that is not a JSON object: ${excerpt(line)}`);
      return;
    }
    if (typeof msg.type !== "string") {
      this.warn(`ignored a line without a string "type": ${excerpt(line)}`);
      return;
    }
    if (msg.type === "start" && typeof msg.call_sid === "string") this._logSid = msg.call_sid; // for the log at once
    if (msg.type === "stop") {
      this._stopSeen = true;
      this.call._stopped = true; // a handler still running sees call.done at once
    }
    this._enqueue(msg);
  }

  /** The input ended (end of stdin, the socket closed): the bot gets onStop unless stop came. */
  inputEnded(reason) {
    if (this._stopSeen) return;
    this._stopSeen = true;
    this.call._stopped = true;
    this._enqueue({ type: "stop", reason });
  }

  _enqueue(msg) {
    this._tail = this._tail.then(() => this._handle(msg)).catch((err) => this.warn(`could not handle a ${msg.type}: ${err && err.stack ? err.stack : err}`));
  }

  async _run(name, ...args) {
    if (typeof this.bot[name] !== "function") return;
    try {
      await this.bot[name](this.call, ...args);
    } catch (err) {
      const text = err instanceof Error ? `${err.name}: ${err.message}` : `${typeof err}: ${String(err)}`;
      this.warn(`${name} raised ${text}`);
      if (err instanceof Error && err.stack) for (const l of err.stack.split("\n")) this.warn(`  ${l}`);
      try {
        this.call.log(`${name} raised ${text}`, "error");
      } catch {
        // the transport is gone
      }
    }
  }

  async _handle(msg) {
    if (this._over) return;
    const call = this.call;
    // After hangup, transfer or end nothing more is for the bot but the
    // stop, and errors: callstream refusing that very line (a transfer to
    // a bad number) means the call goes on, and the bot must hear of it.
    if (call._ended && msg.type === "error" && msg.of === call._endedBy) {
      call._ended = false;
      call._endedBy = null;
    }
    if (call._ended && msg.type !== "stop" && msg.type !== "error") return;
    let handler;
    let args;
    try {
      [handler, args] = this._handler(msg);
    } catch (err) {
      if (!(err instanceof BadMessage)) throw err;
      this.warn(`ignored a ${msg.type} message: ${err.message}`);
      return;
    }
    await this._run(handler, ...args);
    if (msg.type === "stop") {
      this._over = true;
      this._finish();
    }
  }

  /** [handler name, its arguments after call] for a message; throws BadMessage. */
  _handler(msg) {
    const call = this.call;
    switch (msg.type) {
      case "start":
        call.start = msg;
        if (!Number.isInteger(msg.version) || msg.version < VERSION) {
          this.warn(`callstream-bot speaks protocol version ${VERSION}, callstream says ${JSON.stringify(msg.version)}`);
        }
        return ["onStart", []];
      case "utterance": {
        const { pcm, rate } = audio(msg);
        const durationMs = whole(msg, "duration_ms", Math.floor((pcm.length * 1000) / (2 * rate)));
        return ["onUtterance", [{ pcm, rate, durationMs, raw: msg }]];
      }
      case "audio": {
        const { pcm, rate } = audio(msg);
        return ["onAudio", [{ pcm, rate, seq: whole(msg, "seq", 0), dropped: whole(msg, "dropped", 0), raw: msg }]];
      }
      case "speech_started":
        return ["onSpeechStarted", []];
      case "barge_in": {
        const cleared = msg.cleared ?? [];
        if (!Array.isArray(cleared) || !cleared.every((n) => typeof n === "string")) {
          throw new BadMessage('field "cleared" is not a list of mark names');
        }
        return ["onBargeIn", [{ cleared, heardMs: whole(msg, "heard_ms", 0), raw: msg }]];
      }
      case "dtmf":
        return ["onDtmf", [string(msg, "digit")]];
      case "mark": {
        const name = string(msg, "name");
        const outcome = string(msg, "outcome");
        call._resolved(name, outcome);
        return ["onMark", [name, outcome === "played"]];
      }
      case "error": {
        const of = msg.of ?? null;
        if (of !== null && typeof of !== "string") throw new BadMessage('field "of" is not a string or null');
        return ["onError", [of, string(msg, "reason", "")]];
      }
      case "stop": // always the end, whatever its reason holds
        call._stopped = true;
        return ["onStop", [typeof msg.reason === "string" ? msg.reason : ""]];
      default:
        return ["onMessage", [msg]];
    }
  }
}

/** A message from callstream with a field of the wrong kind: ignored. */
class BadMessage extends Error {}

function string(msg, field, fallback) {
  const value = msg[field] ?? fallback;
  if (typeof value !== "string") throw new BadMessage(`field "${field}" missing or not a string`);
  return value;
}

function whole(msg, field, fallback) {
  const value = msg[field] ?? fallback;
  if (!Number.isInteger(value) || value < 0) throw new BadMessage(`field "${field}" is not a whole number`);
  return value;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function audio(msg) {
  const rate = msg.rate;
  if (!Number.isInteger(rate) || rate <= 0) throw new BadMessage('field "rate" missing or not a positive whole number');
  if (typeof msg.pcm !== "string") throw new BadMessage('field "pcm" missing or not a string');
  if (msg.pcm.length % 4 !== 0 || !BASE64.test(msg.pcm)) throw new BadMessage('field "pcm" is not base64');
  const pcm = Buffer.from(msg.pcm, "base64");
  if (pcm.length % 2 !== 0) throw new BadMessage('field "pcm" is not whole 16-bit samples (an odd number of bytes)');
  return { pcm, rate };
}

module.exports = { Bot, Call, Session, TAG, VERSION, pcmBytes };
