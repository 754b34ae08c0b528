module github.com/apex-grpc/apex-grpc/examples/go

go 1.19

// The oldest versions this example is tested with: Debian 12's packaged
// grpc-go and protobuf-go (see README.md for the offline build). With network
// access, `go mod tidy` resolves these and writes go.sum.
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
