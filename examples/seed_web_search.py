import apex_grpc as mc

client = mc.ApexClient(api_key="api-key")
response = client.web_search.search(
    search_query="What is Bittensor?",
    n_results=3,
    max_response_time=20,
)

print(response)
