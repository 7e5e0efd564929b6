// Progressive enhancement: the NHS.UK frontend's components, and a
// Chart.js chart drawn from each data table marked data-chart (the table
// stays on the page: it is the accessible form of the chart).
import { initAll } from '/static/vendor/nhsuk-frontend.min.js';

initAll();

function drawCharts() {
  if (typeof window.Chart === 'undefined') return;
  document.querySelectorAll('table[data-chart]').forEach((table) => {
    const canvas = document.getElementById(table.dataset.chartCanvas);
    if (!canvas) return;
    const labels = [];
    const values = [];
    table.querySelectorAll('tbody tr').forEach((tr) => {
      const head = tr.querySelector('th');
      const cell = tr.querySelector('[data-value]');
      if (!head || !cell) return;
      labels.push(head.textContent.trim());
      values.push(parseFloat(cell.dataset.value));
    });
    if (labels.length === 0) { canvas.hidden = true; return; }
    new window.Chart(canvas, {
      type: table.dataset.chart,
      data: { labels, datasets: [{ label: table.dataset.chartLabel, data: values, backgroundColor: '#005eb8', borderColor: '#005eb8' }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } } },
    });
  });
}

if (document.querySelector('table[data-chart]')) {
  const s = document.createElement('script');
  s.src = '/static/vendor/chart.umd.min.js';
  s.onload = drawCharts;
  document.head.appendChild(s);
}
