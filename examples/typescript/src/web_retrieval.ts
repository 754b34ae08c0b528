// The seed's web-retrieval snippet on the generated client: the request's
// field is `searchQuery` (search_query in the contract).
import { createApexClient } from "./client.js";

// Initialize the client (the key comes from APEX_API_KEY)
const client = createApexClient();

// Web retrieval
const webResults = await client.webRetrieval({
  searchQuery: "latest news about AI",
});

for (const result of webResults.results) {
  console.log(`${result.url}\n  ${result.relevant.replace(/\s+/g, " ").trim()}`);
}
