// A call with a key the server does not accept fails with a typed error:
// ConnectError whose code is Code.Unauthenticated (gRPC UNAUTHENTICATED).
import { Code, ConnectError } from "@connectrpc/connect";

import { createApexClient } from "./client.js";

const client = createApexClient({ apiKey: "not-a-valid-key" });

try {
  await client.chatCompletion({ messages: [{ role: "user", content: "Hello" }] });
  console.error("unexpected: the server accepted a wrong key");
  process.exitCode = 1;
} catch (error) {
  const connectError = ConnectError.from(error);
  if (connectError.code !== Code.Unauthenticated) {
    throw connectError;
  }
  console.log(`${Code[connectError.code]}: ${connectError.rawMessage}`);
}
