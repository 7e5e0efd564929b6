module github.com/herald-health/herald/services/intake

go 1.26.8

require (
	github.com/samply/golang-fhir-models/fhir-models v0.3.2 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
)
