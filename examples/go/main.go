// Command apex-example runs the Apex documentation's snippets on a grpc-go
// client generated from protos/apex/v1/apex.proto:
//
//	apex-example chat        stream a chat completion (the seed's stream: true)
//	apex-example search      web retrieval
//	apex-example wrong-key   a call with a bad key: codes.Unauthenticated
//
// It reads APEX_API_KEY, MACROCOSMOS_BASE_URL and MACROCOSMOS_USE_HTTPS, like
// the Python SDK.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apexv1 "github.com/apex-grpc/apex-grpc/examples/go/gen/apex/v1"
)

// wrongKeyValue is an API key no server accepts.
const wrongKeyValue = "not-a-valid-key"

func main() {
	commands := map[string]func(context.Context, apexv1.ApexServiceClient) error{
		"chat":      chat,
		"search":    search,
		"wrong-key": wrongKey,
	}
	if len(os.Args) != 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: apex-example chat|search|wrong-key")
		os.Exit(2)
	}
	if err := run(commands[os.Args[1]], os.Args[1] == "wrong-key"); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// run connects (with the environment's key, or a wrong one) and runs command.
func run(command func(context.Context, apexv1.ApexServiceClient) error, withWrongKey bool) error {
	key := wrongKeyValue
	if !withWrongKey {
		var err error
		if key, err = apiKeyFromEnv(); err != nil {
			return err
		}
	}
	conn, client, err := dial(key)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return command(ctx, client)
}

// chat streams a completion and prints each chunk's text as it arrives.
func chat(ctx context.Context, client apexv1.ApexServiceClient) error {
	stream, err := client.ChatCompletionStream(ctx, &apexv1.ChatCompletionRequest{
		Messages: []*apexv1.ChatMessage{
			{Role: "system", Content: "You are a helpful assistant."},
			{Role: "user", Content: "Hello, how are you?"},
		},
		Stream: proto.Bool(true),
	})
	if err != nil {
		return err
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		for _, choice := range chunk.GetChoices() {
			fmt.Print(choice.GetDelta().GetContent())
		}
	}
	fmt.Println()
	return nil
}

// search runs a web retrieval and prints each result's url and excerpt.
func search(ctx context.Context, client apexv1.ApexServiceClient) error {
	response, err := client.WebRetrieval(ctx, &apexv1.WebRetrievalRequest{
		SearchQuery: "latest news about AI",
	})
	if err != nil {
		return err
	}
	for _, result := range response.GetResults() {
		fmt.Printf("%s\n  %s\n", result.GetUrl(), strings.Join(strings.Fields(result.GetRelevant()), " "))
	}
	return nil
}

// wrongKey calls with a key the server does not accept; the error carries
// the gRPC status, here codes.Unauthenticated.
func wrongKey(ctx context.Context, client apexv1.ApexServiceClient) error {
	_, err := client.ChatCompletion(ctx, &apexv1.ChatCompletionRequest{
		Messages: []*apexv1.ChatMessage{{Role: "user", Content: "Hello"}},
	})
	if err == nil {
		return errors.New("unexpected: the server accepted a wrong key")
	}
	st := status.Convert(err)
	if st.Code() != codes.Unauthenticated {
		return err
	}
	fmt.Printf("%s: %s\n", st.Code(), st.Message())
	return nil
}
