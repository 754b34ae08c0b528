import apex_grpc as mc

client = mc.ApexClient(api_key="api-key")
response = client.chat.completions.create(
    messages=[{"role": "user", "content": "Write a short story about a cosmonaut learning to paint."}],
)

print(response)
