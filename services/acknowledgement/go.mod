module github.com/herald-health/herald/services/acknowledgement

go 1.26.8
