// Marks the page as JavaScript-enabled for the NHS.UK frontend's styles
// (loaded first in <body>; an external file, so the CSP needs no inline
// script).
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' nhsuk-frontend-supported' : '');
