// A web page calling apex-grpc serve from the browser: Connect-ES's fetch-based
// transport (@connectrpc/connect-web) streams ChatCompletionStream into the page.
//
// The server must serve HTTP and let this page's origin in:
//   apex-grpc serve --engine echo --http-port 8080 --cors-origin http://localhost:5173
// The page reads where to call from its URL (defaults for that command):
//   index.html?server=http://127.0.0.1:8080&key=test-key&protocol=connect&autostart=1
//   protocol: connect (JSON), connect-proto (binary) or grpc-web
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

import { ApexService } from "../gen/apex/v1/apex_pb";

const params = new URLSearchParams(location.search);
const server = params.get("server") ?? "http://127.0.0.1:8080";
const apiKey = params.get("key") ?? "test-key";
const protocol = params.get("protocol") ?? "connect";

const authorize: Interceptor = (next) => (request) => {
  request.header.set("authorization", `Bearer ${apiKey}`);
  return next(request);
};
const options = { baseUrl: server, interceptors: [authorize] };
const transport =
  protocol === "grpc-web"
    ? createGrpcWebTransport(options)
    : createConnectTransport({ ...options, useBinaryFormat: protocol === "connect-proto" });
const client = createClient(ApexService, transport);

const answer = document.getElementById("answer") as HTMLPreElement;
const prompt = document.getElementById("prompt") as HTMLInputElement;

/** Stream the answer to `text` into the page, chunk by chunk. */
async function ask(text: string): Promise<void> {
  answer.textContent = "";
  answer.dataset.state = "streaming";
  let chunks = 0;
  try {
    const stream = client.chatCompletionStream({ messages: [{ role: "user", content: text }] });
    for await (const chunk of stream) {
      answer.textContent += chunk.choices[0]?.delta?.content ?? "";
      answer.dataset.chunks = String(++chunks);
    }
    answer.dataset.state = "done";
  } catch (error) {
    const failure = ConnectError.from(error);
    answer.textContent = `${Code[failure.code]}: ${failure.rawMessage}`;
    answer.dataset.state = "error";
  }
}

document.getElementById("ask")?.addEventListener("submit", (event) => {
  event.preventDefault();
  void ask(prompt.value);
});
if (params.get("autostart") === "1") {
  void ask(prompt.value);
}
