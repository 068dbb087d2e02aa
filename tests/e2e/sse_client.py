"""A server-sent events client over a raw socket (conftest.RawConn), for
test_sse.py and test_progress.py: it sees exactly what ackd writes (chunk by
chunk), comments included, and whether the stream ended.

  s = SseStream(server, task_id, last_event_id=None)
  s.resp                   the response head (s.resp.body for a non-200)
  s.next(timeout)          the next event (Event: id, type, data, at)
  s.wait_for(type)         events up to and including the first of `type`
  s.rest(timeout)          every event until the stream ends
  s.wait_comment(text)     waits for a comment line (": keep-alive")
  s.ended                  the terminating chunk arrived
  s.close(reset=False)     closes (reset=True: an RST, as a crashed client)
"""

import json
import socket
import struct
import time

from conftest import HOST, SLOW, RawConn, build_request


class Event:
    def __init__(self, id, type, data, raw):
        self.id = id
        self.type = type
        self.data = data
        self.raw = raw
        self.at = time.monotonic()

    def __repr__(self):
        return f"<Event {self.id} {self.type} {self.data}>"


def parse_block(block):
    """One event block (lines without the blank line) -> (fields, comments)."""
    fields = {"data": []}
    comments = []
    for line in block.split("\n"):
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            fields["data"].append(value)
        elif name:
            fields[name] = value
    return fields, comments


class SseStream:
    def __init__(self, server, task_id=None, last_event_id=None, path=None, headers=None,
                 timeout=10.0 * SLOW):
        self.timeout = timeout
        self.conn = RawConn(server.host, server.port, timeout)
        hdrs = [("Accept", "text/event-stream")]
        if last_event_id is not None:
            hdrs.append(("Last-Event-ID", str(last_event_id)))
        hdrs += list(headers or [])
        target = path or f"/v1/tasks/{task_id}/events"
        self.conn.send(build_request("GET", target, hdrs, host=HOST))
        self.resp = self.conn.read_head()
        self.ended = False
        self.events = []          # every event parsed, in order
        self.comments = []        # every comment line, in order
        self._queue = []          # events not yet handed out by next()
        self._text = ""
        self.raw = b""
        if self.resp.status != 200:
            self.conn.read_body(self.resp)
            self.ended = True

    # -- reading

    def _pump(self, deadline):
        """Reads one more chunk; False once the stream has ended."""
        if self.ended:
            return False
        left = max(deadline - time.monotonic(), 0.001)
        chunk = self.conn.read_chunk(left)
        if chunk is None:
            self.ended = True
            return False
        self.raw += chunk
        self._text += chunk.decode("utf-8")
        while "\n\n" in self._text:
            block, self._text = self._text.split("\n\n", 1)
            fields, comments = parse_block(block)
            self.comments += comments
            if fields["data"] or "event" in fields or "id" in fields:
                data = "\n".join(fields["data"])
                try:
                    data = json.loads(data) if data else None
                except ValueError:
                    pass
                ev = Event(int(fields["id"]) if "id" in fields else None,
                           fields.get("event", "message"), data, block)
                self.events.append(ev)
                self._queue.append(ev)
        return True

    def next(self, timeout=None):
        """The next event; raises TimeoutError, or EOFError if the stream
        ended first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._queue:
            if not self._pump(deadline):
                raise EOFError(f"the stream ended; events so far: {self.events}")
        return self._queue.pop(0)

    def wait_for(self, type, timeout=None):
        """Events up to and including the first of `type`."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        out = []
        while True:
            ev = self.next(max(deadline - time.monotonic(), 0.001))
            out.append(ev)
            if ev.type == type:
                return out

    def rest(self, timeout=None):
        """Every event until the stream ends (raises TimeoutError if it does
        not end in time)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._pump(deadline):
            pass
        out, self._queue = self._queue, []
        return out

    def wait_comment(self, text, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while text not in self.comments:
            if not self._pump(deadline):
                raise EOFError("the stream ended before the comment")
        return True

    # -- the end

    def close(self, reset=False):
        if reset:
            try:
                self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                          struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
