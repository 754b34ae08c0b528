// An Apex client generated from protos/apex/v1/apex.proto: Connect-ES over
// gRPC (HTTP/2), configured from the same environment as the Python SDK.
//
//   APEX_API_KEY (then MACROCOSMOS_API_KEY)   the API key
//   MACROCOSMOS_BASE_URL                      host:port, or an http(s):// URL
//   MACROCOSMOS_USE_HTTPS                     unset/true/1/yes/y/on: TLS;
//                                             anything else: plaintext
//   APEX_TRANSPORT                            grpc (the default, the gRPC port);
//                                             connect-json, connect-proto or
//                                             grpc-web (the HTTP port of
//                                             `apex-grpc serve --http-port`)
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

import { ApexService } from "../gen/apex/v1/apex_pb.js";

/**
 * Apex's former endpoint (TLS on port 443), the default for compatibility: it may no
 * longer answer apex.v1 (apex-grpc serve hosts the contract).
 */
export const DEFAULT_ENDPOINT = "constellation.api.cloud.macrocosmos.ai";

/** What createApexClient() takes; anything left out comes from the environment. */
export interface ApexClientOptions {
  apiKey?: string;
  baseUrl?: string;
}

/** A typed client for every RPC of apex.v1.ApexService. */
export type ApexClient = Client<typeof ApexService>;

/** A client that sends `authorization: Bearer <key>` on every call. */
export function createApexClient(options: ApexClientOptions = {}): ApexClient {
  const apiKey =
    options.apiKey || process.env.APEX_API_KEY || process.env.MACROCOSMOS_API_KEY;
  if (!apiKey) {
    throw new Error("no API key: pass { apiKey } or set APEX_API_KEY");
  }
  const authorize: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${apiKey}`);
    return next(request);
  };
  const baseUrl = baseUrlOf(
    options.baseUrl || process.env.MACROCOSMOS_BASE_URL || DEFAULT_ENDPOINT,
  );
  const transport = transportFor(process.env.APEX_TRANSPORT || "grpc", baseUrl, authorize);
  return createClient(ApexService, transport);
}

/** The protocol APEX_TRANSPORT names; the HTTP ones over HTTP/1.1, as a browser's fetch. */
function transportFor(name: string, baseUrl: string, authorize: Interceptor): Transport {
  const options = { baseUrl, interceptors: [authorize] };
  switch (name) {
    case "grpc":
      return createGrpcTransport(options);
    case "connect-json":
      return createConnectTransport({ ...options, httpVersion: "1.1" });
    case "connect-proto":
      return createConnectTransport({ ...options, httpVersion: "1.1", useBinaryFormat: true });
    case "grpc-web":
      return createGrpcWebTransport({ ...options, httpVersion: "1.1" });
    default:
      throw new Error(
        `APEX_TRANSPORT: unknown transport "${name}" (grpc, connect-json, connect-proto, grpc-web)`,
      );
  }
}

/** `host:port` becomes an https:// or http:// URL, by MACROCOSMOS_USE_HTTPS. */
function baseUrlOf(target: string): string {
  if (/^https?:\/\//i.test(target)) {
    return target;
  }
  const useHttps = (process.env.MACROCOSMOS_USE_HTTPS ?? "").trim().toLowerCase();
  const tls = ["", "true", "1", "yes", "y", "on"].includes(useHttps);
  return `${tls ? "https" : "http"}://${target}`;
}
