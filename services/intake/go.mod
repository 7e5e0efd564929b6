module github.com/herald-health/herald/services/intake

go 1.26.8
