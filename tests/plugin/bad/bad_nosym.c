/* SPDX-License-Identifier: Apache-2.0 */
/* Bad test plugin: exports no sp_plugin_desc symbol at all. */
#include <sp/sp_plugin.h>

SP_EXPORT int sp_plugin_descriptor_misspelt = 1;
