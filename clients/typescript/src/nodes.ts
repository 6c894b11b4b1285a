// Connections to the plane's nodes: one HTTP/2 session per node URI (gRPC over h2c for http://,
// TLS with ALPN h2 for https://), shared by the WatchMaster stream and the unary calls, with
// keep-alive pings and the credentials on every call.

import * as tls from "node:tls";
import { type Client as RpcClient, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { EntityService } from "./gen/haplane/v1/entity_pb.js";
import { HaService } from "./gen/haplane/v1/ha_pb.js";
import { InvalidEndpointError } from "./errors.js";
import type { Credentials, Settings } from "./options.js";
import { trimUri } from "./view.js";

/** One node: its gRPC services over its HTTP/2 session. */
export interface NodeConnection {
  readonly uri: string;
  readonly ha: RpcClient<typeof HaService>;
  readonly entities: RpcClient<typeof EntityService>;
}

/** `uri` checked (http or https, a host, no query) and trimmed of trailing `/`. */
export function checkEndpoint(uri: string): string {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new InvalidEndpointError(uri, "not a URI");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidEndpointError(uri, `scheme ${url.protocol} is not http: or https:`);
  }
  if (url.hostname === "") {
    throw new InvalidEndpointError(uri, "no host");
  }
  if (url.search !== "" || url.hash !== "") {
    throw new InvalidEndpointError(uri, "a query or fragment is not allowed");
  }
  return trimUri(uri);
}

/** The `authorization: Basic ...` value of `credentials`. */
export function basicAuthorization(credentials: Credentials): string {
  const pair = `${credentials.user}:${credentials.password}`;
  return `Basic ${Buffer.from(pair, "utf8").toString("base64")}`;
}

export class NodePool {
  private readonly nodes = new Map<string, NodeConnection & { session: Http2SessionManager }>();
  private readonly interceptors: Interceptor[];
  private closed = false;

  constructor(private readonly settings: Settings) {
    const interceptors: Interceptor[] = [];
    if (settings.credentials !== undefined) {
      const authorization = basicAuthorization(settings.credentials);
      interceptors.push((next) => (request) => {
        request.header.set("authorization", authorization);
        return next(request);
      });
    }
    this.interceptors = [...interceptors, ...settings.interceptors];
  }

  /** The (cached, lazily connected) node at `uri`. */
  get(uri: string): NodeConnection {
    const key = trimUri(uri);
    const known = this.nodes.get(key);
    if (known !== undefined) {
      return known;
    }
    if (this.closed) {
      throw new Error("node pool closed");
    }
    const https = key.toLowerCase().startsWith("https:");
    const nodeOptions =
      https && this.settings.caPem !== undefined
        ? { ca: [...tls.rootCertificates, this.settings.caPem.toString()] }
        : {};
    const session = new Http2SessionManager(
      key,
      {
        pingIntervalMs: this.settings.keepAliveMs,
        pingTimeoutMs: this.settings.keepAliveMs * 3,
        pingIdleConnection: false,
      },
      nodeOptions,
    );
    const transport = createGrpcTransport({
      baseUrl: key,
      sessionManager: session,
      interceptors: this.interceptors,
    });
    const node = {
      uri: key,
      session,
      ha: createClient(HaService, transport),
      entities: createClient(EntityService, transport),
    };
    this.nodes.set(key, node);
    return node;
  }

  /** Closes every connection (open calls fail with CANCELLED). */
  close(): void {
    this.closed = true;
    for (const node of this.nodes.values()) {
      node.session.abort();
    }
    this.nodes.clear();
  }
}
