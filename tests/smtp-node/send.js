// SPDX-License-Identifier: Apache-2.0
// Sends one message through nodemailer to the SMTP ingress for the
// integration tests; argv[2] is a JSON object {port, secure, user, pass,
// message}, the message as nodemailer takes it with attachment contents in
// base64. Prints nodemailer's info object as JSON.
'use strict';
const nodemailer = require('nodemailer');

async function main() {
    const arg = JSON.parse(process.argv[2]);
    const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: arg.port,
        secure: !!arg.secure,
        requireTLS: !arg.secure,
        auth: { user: arg.user, pass: arg.pass },
        tls: { rejectUnauthorized: false },
        logger: !!process.env.SP_NODE_DEBUG,
        debug: !!process.env.SP_NODE_DEBUG,
    });
    const msg = arg.message;
    for (const a of msg.attachments || []) {
        a.content = Buffer.from(a.content, 'base64');
    }
    const info = await transport.sendMail(msg);
    transport.close();
    process.stdout.write(JSON.stringify(info) + '\n');
}

main().catch((err) => {
    process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
    process.exit(1);
});
