import asyncio

import apex_grpc as mc


async def main() -> None:
    client = mc.AsyncApexClient(api_key="api-key")
    response = await client.chat.completions.create(
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello, how are you?"},
        ],
        stream=True,
    )
    async for chunk in response:
        print(chunk.choices[0].delta.content, end="", flush=True)
    print()
    await client.aclose()


asyncio.run(main())
