#!/usr/bin/env python3
"""A local stand-in for the three OpenAI endpoints the OpenAI bot uses.

No network, no key that means anything: the OpenAI bot's test (and anyone
trying the bot without an account) points OPENAI_BASE_URL here. It follows
the documented request and response shapes of:

  POST /v1/audio/transcriptions  multipart/form-data: file (a WAV here), model,
                                 optional language, prompt, response_format
                                 (json, text, verbose_json); answers
                                 {"text": ...} (or plain text)
  POST /v1/chat/completions      JSON; stream=true answers Server-Sent Events,
                                 one `data: {chat.completion.chunk}` a line and
                                 `data: [DONE]`; tool calls in the deltas when
                                 a reply rule names a tool the request offers
  POST /v1/audio/speech          JSON {model, input, voice, response_format};
                                 pcm answers raw 24 kHz 16-bit LE mono, sent
                                 chunked as it is "generated"; wav a WAV

It checks `Authorization: Bearer <key>`, refuses malformed requests with
OpenAI's error shape ({"error": {"message", "type", "param", "code"}}) and the
same status codes, and records every request for a test to inspect.

What it hears, says and answers:

- transcription: a table from the audio (the SHA-256 of the WAV's PCM frames)
  to text, set by a test; other audio takes the next of the `script` texts
  (--hear), then is decoded by pocketsphinx's default English model when
  pocketsphinx is installed (crude on synthetic speech), else heard as "".
- chat: reply rules, first match on the last user message wins: a list of
  sentences, optionally a tool call, optionally a pause ("hold") inside the
  reply until a test releases it, or an HTTP error.
- speech: espeak-ng, resampled to 24 kHz; without espeak-ng, a tone whose
  length follows the text.

Use it from Python (`FakeOpenAI(key=...).start()`; see test_openai_bot.py), or
run it for a manual try of the bot:

    python3 fake_openai.py --port 18501 --key test
    OPENAI_API_KEY=test OPENAI_BASE_URL=http://127.0.0.1:18501/v1 python3 bot.py
"""

import argparse
import array
import datetime
import email.parser
import email.policy
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SPEECH_RATE = 24000  # OpenAI's documented rate for response_format "pcm"
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
TRANSCRIPTION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# The bytes of speech sent per chunk of the chunked body: odd on purpose, so a
# client that plays each chunk as it comes must carry a byte between chunks.
SPEECH_CHUNK = 4801
HOLD_TIMEOUT = 30.0  # a hold nobody releases ends here (a deadlock breaker, not a timing test)


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status, message, type_="invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


def default_rules():
    """The replies of `python3 fake_openai.py`: enough for a manual call."""
    return [
        {"match": ["goodbye", "bye"], "say": ["Goodbye, thanks for calling."], "tool": {"name": "end_call", "arguments": {"farewell": ""}}},
        {"match": ["agent", "person", "human", "operator"], "say": [], "tool": {"name": "transfer_call", "arguments": {"reason": "the caller asked for a person"}}},
        {"match": ["time"], "say": ["It is {time} here.", "Is there anything else I can help you with?"]},
        {"match": [""], "say": ["You said: {heard}.", "I am a local test model, so that is all I can say."]},
    ]


class FakeOpenAI:
    """The fake server. Attributes a test sets (all optional):

    key          the API key callers must send as `Authorization: Bearer <key>`
    transcripts  {sha256 hex of PCM frames: text}: what the audio "says"
    script       texts that audio not in `transcripts` says, in turn (then
                 pocketsphinx)
    rules        chat reply rules, a list of dicts, first match wins:
                   match   substring or list of substrings of the last user
                           message (lower case); "" matches anything
                   say     list of sentences, streamed a few words a chunk;
                           "{heard}" is the user message, "{time}" the time
                   tool    {"name": ..., "arguments": {...}}: a tool call after
                           the sentences, if the request offers that function
                   hold    a name: after `hold_after` sentences (default 1) and
                           the first word of the next, the stream pauses until
                           `release(name)` (or HOLD_TIMEOUT)
                   status  answer this HTTP error instead (500, 429, ...)
    voice        callable(text) -> 24 kHz PCM bytes (default espeak-ng)

    `requests` is the record: one dict per request, in arrival order, with
    `path`, `t` (time.monotonic() when it arrived), `status`, `t_end` (when the
    answer was complete) and what the endpoint parsed (see the handlers).
    """

    def __init__(self, key="sk-test", host="127.0.0.1", port=0, rules=None, transcripts=None, voice=None, script=None):
        self.key = key
        self.script = list(script or [])
        self.rules = rules if rules is not None else default_rules()
        self.transcripts = dict(transcripts or {})
        self.voice = voice or espeak_voice
        self.requests = []
        self.failures = {}  # path -> [status, remaining count]
        self._holds = {}
        self._lock = threading.Lock()
        self._recogniser = None
        self._decode_lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread = None

    @property
    def base_url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        for event in list(self._holds.values()):
            event.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- what a test uses --------------------------------------------------

    def hear(self, pcm, text):
        """Make audio whose PCM frames are `pcm` transcribe as `text`."""
        self.transcripts[hashlib.sha256(pcm).hexdigest()] = text

    def fail(self, path, status=500, times=1):
        """Answer the next `times` requests to `path` (e.g. "/v1/chat/completions") with `status`."""
        with self._lock:
            self.failures[path] = [status, times]

    def release(self, name):
        """Let a held chat stream go on."""
        self._hold(name).set()

    def of(self, path):
        """The recorded requests to `path`, in order."""
        with self._lock:
            return [r for r in self.requests if r["path"] == path]

    def wait_for(self, predicate, timeout=60.0):
        """Wait until some recorded request satisfies `predicate`; return it (or None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for r in self.requests:
                    if predicate(r):
                        return r
            time.sleep(0.01)
        return None

    # -- internals ---------------------------------------------------------

    def _hold(self, name):
        with self._lock:
            return self._holds.setdefault(name, threading.Event())

    def _take_failure(self, path):
        with self._lock:
            f = self.failures.get(path)
            if not f or f[1] <= 0:
                return None
            f[1] -= 1
            return f[0]

    def _record(self, record):
        with self._lock:
            self.requests.append(record)

    def transcribe(self, pcm, rate):
        text = self.transcripts.get(hashlib.sha256(pcm).hexdigest())
        if text is not None:
            return text
        with self._lock:
            if self.script:
                return self.script.pop(0)
        return self._pocketsphinx(pcm, rate)

    def _pocketsphinx(self, pcm, rate):
        try:
            from pocketsphinx import Decoder
        except ImportError:
            return ""
        with self._decode_lock:
            if self._recogniser is None:
                self._recogniser = Decoder(samprate=16000, logfn=os.devnull)
            decoder = self._recogniser
            decoder.start_utt()
            decoder.process_raw(resample(pcm, rate, 16000), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def rule_for(self, text):
        low = text.lower()
        for rule in self.rules:
            match = rule.get("match", "")
            needles = [match] if isinstance(match, str) else list(match)
            if any(n in low for n in needles):
                return rule
        return {"say": ["I have nothing to say to that."]}


def espeak_voice(text):
    """espeak-ng's voice as 24 kHz PCM; a tone when espeak-ng is not installed."""
    if shutil.which("espeak-ng"):
        wav = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True, timeout=60).stdout
        with wave.open(io.BytesIO(wav)) as w:
            rate, pcm = w.getframerate(), w.readframes(1 << 30)  # espeak-ng's length fields are bogus
        return resample(pcm, rate, SPEECH_RATE)
    n = SPEECH_RATE * max(1, len(text)) // 15  # about 15 characters a second
    return array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / SPEECH_RATE)) for i in range(n))).tobytes()


def resample(pcm, rate_in, rate_out):
    """Linear-interpolation resampling of 16-bit LE mono PCM (little-endian hosts)."""
    if rate_in == rate_out or not pcm:
        return pcm
    src = array.array("h")
    src.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    n_out = len(src) * rate_out // rate_in
    last = len(src) - 1
    out = array.array("h", bytes(2 * n_out))
    step = rate_in / rate_out
    for i in range(n_out):
        pos = i * step
        j = int(pos)
        a = src[min(j, last)]
        b = src[min(j + 1, last)]
        out[i] = int(a + (b - a) * (pos - j))
    return out.tobytes()


def pcm_of_wav(data):
    """(rate, PCM frames) of a 16-bit mono WAV, or an ApiError as OpenAI words it."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ApiError(400, "The fake transcribes 16-bit mono WAV only.", param="file")
            return w.getframerate(), w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise ApiError(
            400,
            f"Invalid file format. Supported formats: {['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']} ({e})",
            param="file",
        ) from e


def tokens(text):
    """Split text the way a model streams it: words with their leading space."""
    return re.findall(r"\s*\S+", text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up mid-request (a bot ended by its call) is no news.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as the real API
    server_version = "fake-openai/1"

    def log_message(self, fmt, *args):  # quiet: a test reads the record instead
        pass

    @property
    def fake(self):
        return self.server.fake

    # -- plumbing ----------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method):
        record = {"path": self.path.split("?")[0], "method": method, "t": time.monotonic(), "status": None}
        self.fake._record(record)
        body = b""
        try:
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = self._read_chunked()
            elif length:
                body = self.rfile.read(int(length))
            self._check_key()
            routes = {
                "/v1/audio/transcriptions": self._transcriptions,
                "/v1/chat/completions": self._chat,
                "/v1/audio/speech": self._speech,
            }
            handler = routes.get(record["path"])
            if handler is None:
                raise ApiError(404, f"Invalid URL ({method} {record['path']})")
            if method != "POST":
                raise ApiError(405, f"Invalid method for URL ({method} {record['path']})")
            status = self.fake._take_failure(record["path"])
            if status is not None:
                raise ApiError(status, "The server had an error while processing your request. Sorry about that!", type_="server_error")
            handler(body, record)
        except ApiError as e:
            record["error"] = e.body["error"]
            try:
                self._json(e.status, e.body, record)
            except OSError:
                record["client_gone"] = True
        except (BrokenPipeError, ConnectionResetError):
            record["client_gone"] = True
        record.setdefault("t_end", time.monotonic())

    def _read_chunked(self):
        out = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    def _check_key(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        key = auth[7:].strip()
        if key != self.fake.key:
            raise ApiError(401, f"Incorrect API key provided: {key[:3]}***{key[-4:]}.", code="invalid_api_key")

    def _headers(self, status, content_type, length=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", "req_" + secrets.token_hex(12))
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if status >= 500:
            # The SDK retries 5xx by itself; say so as the real API may.
            self.send_header("x-should-retry", "true")
        self.end_headers()

    def _json(self, status, obj, record):
        data = json.dumps(obj).encode()
        self._headers(status, "application/json", len(data))
        self.wfile.write(data)
        self.wfile.flush()
        record["status"] = status
        record["response"] = obj

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json_body(self, body):
        if "application/json" not in self.headers.get("Content-Type", ""):
            raise ApiError(400, "Invalid Content-Type header, expected application/json.")
        try:
            obj = json.loads(body)
        except ValueError as e:
            raise ApiError(400, f"We could not parse the JSON body of your request. ({e})") from e
        if not isinstance(obj, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return obj

    # -- POST /v1/audio/transcriptions -------------------------------------

    def _transcriptions(self, body, record):
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(400, "Invalid Content-Type header, expected multipart/form-data.")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
        )
        if not msg.is_multipart():
            raise ApiError(400, "Could not parse multipart form")
        fields, files = {}, {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name is None:
                continue
            filename = part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if filename is not None:
                files[name] = {"filename": filename, "content_type": part.get_content_type(), "data": payload}
            else:
                fields[name] = payload.decode("utf-8", errors="replace")
        record["fields"] = fields
        record["file"] = files.get("file")
        if "file" not in files:
            raise ApiError(400, "you must provide a file", param="file")
        if not fields.get("model"):
            raise ApiError(400, "you must provide a model parameter", param="model")
        fmt = fields.get("response_format", "json")
        if fmt not in TRANSCRIPTION_FORMATS:
            raise ApiError(400, f"Invalid value for 'response_format': {fmt!r}.", param="response_format")
        if fields["model"].startswith("gpt-4o") and fmt not in ("json", "text"):
            raise ApiError(400, f"response_format '{fmt}' is not compatible with model '{fields['model']}'. Use 'json' or 'text'.", param="response_format")
        if fmt in ("srt", "vtt", "diarized_json"):
            raise ApiError(400, f"The fake does not produce response_format {fmt!r}.", param="response_format")
        rate, pcm = pcm_of_wav(files["file"]["data"])
        record["wav"] = {"rate": rate, "pcm": pcm}
        text = self.fake.transcribe(pcm, rate)
        record["text"] = text
        seconds = len(pcm) / 2 / rate
        if fmt == "text":
            data = (text + "\n").encode()
            self._headers(200, "text/plain; charset=utf-8", len(data))
            self.wfile.write(data)
            record["status"] = 200
            return
        if fmt == "verbose_json":
            obj = {"task": "transcribe", "language": fields.get("language") or "english", "duration": seconds, "text": text,
                   "segments": [], "usage": {"type": "duration", "seconds": math.ceil(seconds)}}
        elif fields["model"] == "whisper-1":
            obj = {"text": text, "usage": {"type": "duration", "seconds": math.ceil(seconds)}}
        else:
            audio_tokens = max(1, int(seconds * 10))
            out_tokens = len(tokens(text))
            obj = {"text": text, "usage": {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": out_tokens,
                                           "total_tokens": audio_tokens + out_tokens,
                                           "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0}}}
        self._json(200, obj, record)

    # -- POST /v1/chat/completions -----------------------------------------

    def _chat(self, body, record):
        req = self._json_body(body)
        record["json"] = req
        if not isinstance(req.get("model"), str) or not req["model"]:
            raise ApiError(400, "you must provide a model parameter", param="model")
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must contain at least one message.", param="messages", code="invalid_value" if messages == [] else None)
        offered = self._check_tools(req.get("tools"))
        self._check_messages(messages)
        stream = req.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, f"Invalid type for 'stream': expected a boolean, but got {type(stream).__name__} instead.", param="stream", code="invalid_type")
        if req.get("stream_options") is not None and not stream:
            raise ApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options")
        heard = next((m for m in reversed(messages) if m.get("role") == "user"), {}).get("content", "")
        if isinstance(heard, list):  # content parts
            heard = " ".join(p.get("text", "") for p in heard if isinstance(p, dict))
        rule = self.fake.rule_for(heard)
        record["rule"] = rule
        if "status" in rule:
            raise ApiError(rule["status"], "The server had an error while processing your request. Sorry about that!", type_="server_error")
        now = datetime.datetime.now()
        values = {"heard": heard.strip().rstrip(".?!"), "time": f"{now.hour % 12 or 12}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}"}
        sentences = [s.format(**values) for s in rule.get("say", [])]
        tool = rule.get("tool")
        if tool is not None and tool["name"] not in offered:
            record["tool_not_offered"] = tool["name"]
            tool = None
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        call_id = "call_" + secrets.token_hex(12) if tool else None
        record["sentences"] = sentences
        record["tool_call"] = {"id": call_id, **tool} if tool else None
        if not stream:
            message = {"role": "assistant", "content": " ".join(sentences) or None, "refusal": None, "annotations": []}
            if tool:
                message["tool_calls"] = [{"id": call_id, "type": "function", "function": {"name": tool["name"], "arguments": json.dumps(tool["arguments"])}}]
            obj = {"id": completion_id, "object": "chat.completion", "created": created, "model": req["model"],
                   "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if tool else "stop"}],
                   "usage": self._usage(messages, sentences), "service_tier": "default", "system_fingerprint": "fp_fake"}
            self._json(200, obj, record)
            return

        def chunk(delta, finish=None, usage=None, choices=True):
            obj = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": req["model"],
                   "service_tier": "default", "system_fingerprint": "fp_fake",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
            if usage is not None:
                obj["usage"] = usage
            record.setdefault("chunks", []).append(obj)
            self._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

        self._headers(200, "text/event-stream; charset=utf-8")
        record["status"] = 200
        chunk({"role": "assistant", "content": "", "refusal": None})
        hold, hold_after = rule.get("hold"), rule.get("hold_after", 1)
        for i, sentence in enumerate(sentences):
            for j, tok in enumerate(tokens((" " if i else "") + sentence)):
                if hold and i == hold_after and j == 1:
                    record["held_at"] = time.monotonic()
                    released = self.fake._hold(hold).wait(HOLD_TIMEOUT)
                    record["released_at"] = time.monotonic()
                    record["hold_timed_out"] = not released
                chunk({"content": tok})
        if tool:
            args = json.dumps(tool["arguments"])
            chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": tool["name"], "arguments": ""}}]})
            for k in range(0, len(args), 8):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[k:k + 8]}}]})
        chunk({}, finish="tool_calls" if tool else "stop")
        if isinstance(req.get("stream_options"), dict) and req["stream_options"].get("include_usage"):
            chunk(None, usage=self._usage(messages, sentences), choices=False)
        self._chunk(b"data: [DONE]\n\n")
        self._end_chunks()
        record["t_end"] = time.monotonic()

    @staticmethod
    def _usage(messages, sentences):
        prompt = sum(len(tokens(str(m.get("content") or ""))) for m in messages)
        completion = sum(len(tokens(s)) for s in sentences)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    def _check_tools(tools):
        """The function names a valid `tools` offers."""
        if tools is None:
            return set()
        if not isinstance(tools, list):
            raise ApiError(400, "Invalid type for 'tools': expected an array.", param="tools", code="invalid_type")
        names = set()
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
                raise ApiError(400, f"Missing required parameter: 'tools[{i}].function'.", param=f"tools[{i}].function", code="missing_required_parameter")
            name = fn.get("name")
            if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
                raise ApiError(400, f"Invalid 'tools[{i}].function.name': string does not match pattern.", param=f"tools[{i}].function.name", code="invalid_value")
            params = fn.get("parameters")
            if params is not None and (not isinstance(params, dict) or params.get("type") != "object"):
                raise ApiError(400, f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"'.", param=f"tools[{i}].function.parameters", code="invalid_function_parameters")
            names.add(name)
        return names

    @staticmethod
    def _check_messages(messages):
        """What the real API refuses: bad roles, and tool results that answer no call."""
        open_calls = set()
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise ApiError(400, f"Invalid value: '{m.get('role') if isinstance(m, dict) else m}'. Supported values are: {', '.join(repr(r) for r in ROLES)}.", param=f"messages[{i}].role", code="invalid_value")
            role, content = m["role"], m.get("content")
            if role == "tool":
                if m.get("tool_call_id") not in open_calls:
                    raise ApiError(400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.", param=f"messages.[{i}].role")
                open_calls.discard(m["tool_call_id"])
                continue
            if open_calls:
                raise ApiError(400, "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
                               f"The following tool_call_ids did not have response messages: {', '.join(sorted(open_calls))}", param=f"messages.[{i}].role")
            if role == "assistant" and m.get("tool_calls"):
                open_calls = {c.get("id") for c in m["tool_calls"] if isinstance(c, dict)}
            elif not isinstance(content, (str, list)):
                raise ApiError(400, f"Invalid type for 'messages[{i}].content': expected one of a string or array of objects, but got {type(content).__name__} instead.", param=f"messages[{i}].content", code="invalid_type")
        if open_calls:
            raise ApiError(400, "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'.", param="messages")

    # -- POST /v1/audio/speech ---------------------------------------------

    def _speech(self, body, record):
        req = self._json_body(body)
        record["json"] = req
        if not isinstance(req.get("model"), str) or not req["model"]:
            raise ApiError(400, "you must provide a model parameter", param="model")
        text = req.get("input")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
        if len(text) > 4096:
            raise ApiError(400, f"'input' is too long: {len(text)} characters, the maximum is 4096.", param="input", code="string_above_max_length")
        voice = req.get("voice")
        if not (isinstance(voice, str) and voice) and not (isinstance(voice, dict) and isinstance(voice.get("id"), str)):
            raise ApiError(400, "Missing required parameter: 'voice'.", param="voice", code="missing_required_parameter")
        fmt = req.get("response_format", "mp3")
        if fmt not in SPEECH_FORMATS:
            raise ApiError(400, f"Invalid value: '{fmt}'. Supported values are: {', '.join(repr(f) for f in SPEECH_FORMATS)}.", param="response_format", code="invalid_value")
        if fmt not in ("pcm", "wav"):
            raise ApiError(400, f"The fake speaks response_format 'pcm' and 'wav' only, not {fmt!r}.", param="response_format")
        speed = req.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
            raise ApiError(400, f"Invalid 'speed': {speed!r}, expected a number from 0.25 to 4.0.", param="speed")
        if "instructions" in req and req["model"] in ("tts-1", "tts-1-hd"):
            raise ApiError(400, f"'instructions' is not supported with model '{req['model']}'.", param="instructions")
        pcm = self.fake.voice(text)
        record["input"] = text
        record["pcm"] = pcm
        if fmt == "wav":
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SPEECH_RATE)
                w.writeframes(pcm)
            payload, ctype = buf.getvalue(), "audio/wav"
        else:
            payload, ctype = pcm, "audio/pcm"
        self._headers(200, ctype)
        record["status"] = 200
        record["chunk_times"] = []
        for k in range(0, len(payload), SPEECH_CHUNK):
            self._chunk(payload[k:k + SPEECH_CHUNK])
            record["chunk_times"].append(time.monotonic())
        self._end_chunks()
        record["t_end"] = time.monotonic()


def main(argv=None):
    parser = argparse.ArgumentParser(description="A local fake of OpenAI's transcription, chat and speech endpoints.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18501)
    parser.add_argument("--key", default=os.environ.get("OPENAI_API_KEY", "sk-test"), help="the API key to accept (default $OPENAI_API_KEY or sk-test)")
    parser.add_argument("--hear", action="append", default=[], metavar="TEXT",
                        help="what the next utterance says (repeatable, in order); after these, pocketsphinx decides")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(key=args.key, host=args.host, port=args.port, script=args.hear).start()
    print(f"fake OpenAI on {fake.base_url} (key {args.key!r})", file=sys.stderr, flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.2)
            with fake._lock:
                new = fake.requests[seen:]
            for r in new:
                if r.get("t_end") is None:
                    break
                seen += 1
                what = r.get("text") or r.get("input") or " ".join(r.get("sentences") or []) or r.get("error", {}).get("message", "")
                print(f"{r['method']} {r['path']} {r['status']} {what!r}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
