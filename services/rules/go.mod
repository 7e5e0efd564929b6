module github.com/herald-health/herald/services/rules

go 1.26.8
