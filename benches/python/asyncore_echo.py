"""The echo server of Python's asyncore documentation, as the harness runs it.

    python3 -W ignore benches/python/asyncore_echo.py PORT [--poll]

The handler and server classes are the documentation's, word for word but for
three things the harness needs:

- the port comes from argv (0 picks a free one) and the first line on stdout
  is `listening on HOST:PORT`, as the other servers print it;
- the listen backlog is 1024 as for every other server (the documentation's 5
  makes thousands of connects stall on SYN retransmits), and the per-connection
  `print` goes to stderr, which the harness discards;
- `--poll` runs `asyncore.loop(use_poll=True)`: asyncore's default `select`
  cannot watch a descriptor numbered 1024 or more (ValueError), so the
  idle-connection scenarios use poll.
"""

import asyncore
import sys


class EchoHandler(asyncore.dispatcher_with_send):

    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):

    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket()
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        print('Incoming connection from %s' % repr(addr), file=sys.stderr)
        handler = EchoHandler(sock)


port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
server = EchoServer('127.0.0.1', port)
print('listening on 127.0.0.1:%d' % server.socket.getsockname()[1], flush=True)
asyncore.loop(use_poll='--poll' in sys.argv[2:])
