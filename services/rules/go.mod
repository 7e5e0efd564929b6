module github.com/herald-health/herald/services/rules

go 1.26.8

require (
	github.com/google/cel-go v0.31.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)
