module github.com/herald-health/herald/services/acknowledgement

go 1.26.8

require (
	github.com/stretchr/testify v1.12.1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
