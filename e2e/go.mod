module github.com/herald-health/herald/e2e

go 1.26.8
