// Bundle three.js and Swagger UI (from npm) into the Python package's static files, so the page works offline.
// Usage: cd web && npm ci && npm run build   (the output is committed; users need no npm)
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'src', 'localdepth', 'server', 'static', 'vendor');
const threeVersion = JSON.parse(readFileSync(join(here, 'node_modules', 'three', 'package.json'))).version;
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'three-vendor.js')],
  outfile: join(out, 'three-vendor.min.js'),
  bundle: true, minify: true, format: 'esm', target: 'es2020', legalComments: 'none',
  banner: { js: `/* three.js r${threeVersion.split('.')[1]} (${threeVersion}), MIT licence: see three-LICENSE.txt. Built by web/build.mjs */` },
});
copyFileSync(join(here, 'node_modules', 'three', 'LICENSE'), join(out, 'three-LICENSE.txt'));

// Swagger UI for /docs, served from the package instead of FastAPI's default CDN.
const swagger = join(here, 'node_modules', 'swagger-ui-dist');
const swaggerOut = join(out, 'swagger-ui');
mkdirSync(swaggerOut, { recursive: true });
for (const [from, to] of [['swagger-ui-bundle.js', 'swagger-ui-bundle.js'], ['swagger-ui.css', 'swagger-ui.css'],
                          ['LICENSE', 'LICENSE.txt'], ['swagger-ui-bundle.js.LICENSE.txt', 'swagger-ui-bundle.js.LICENSE.txt'],
                          ['favicon-32x32.png', 'favicon-32x32.png']]) {
  copyFileSync(join(swagger, from), join(swaggerOut, to));
}
const swaggerVersion = JSON.parse(readFileSync(join(swagger, 'package.json'))).version;
console.log(`three ${threeVersion}, swagger-ui-dist ${swaggerVersion} -> ${out}`);
