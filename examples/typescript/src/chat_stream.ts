// The seed's chat-completions snippet on the generated client. The seed
// writes `client.chat.completions.create({ messages, stream: true })`; with
// the contract that is the ChatCompletionStream RPC, whose answer arrives as
// ChatCompletionChunkResponse messages (choices[0].delta.content each).
import { createApexClient } from "./client.js";

// Initialize the client (the key comes from APEX_API_KEY)
const client = createApexClient();

// Chat completions
const response = client.chatCompletionStream({
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "Hello, how are you?" },
  ],
  stream: true,
});

for await (const chunk of response) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
}
process.stdout.write("\n");
