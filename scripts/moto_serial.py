"""moto's S3 server, answering one request at a time.

moto checks `If-None-Match: *` and then stores the object as two steps, so under load two
concurrent create-if-absent PUTs of one key can both succeed (the store conformance test caught
it: two winners). Real S3 makes the check and the write one step, and haplane's claims rely on
that. Serialising requests gives the tests the same guarantee; keep-alive connections stay.

Usage: moto_serial.py -H HOST -p PORT
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def serialised(app):
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            # Materialise the body inside the lock: the request is done when the lock is released.
            return list(app(environ, start_response))

    return handle


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
